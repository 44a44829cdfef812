"""A client's `sent` events (setting events_sent): one per message, one add_events per publish
call, after the publish; a store that cannot be reached costs a drop, never the publish. And
Celery's names for the event settings."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from forkq import Forkq
from forkq.engines.contract import READ_MAX
from forkq.events import TaskEvent, TaskEventKind, decode

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def app() -> Iterator[Forkq]:
    app = Forkq("t", broker=f"memory://{uuid.uuid4().hex}", events_sent=True)

    @app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    yield app
    app.close()


def sent(app: Forkq) -> list[tuple[str, str, str]]:
    page = app.backend.read_events(None, READ_MAX)
    events = [decode(e.body) for e in page.events]
    assert all(isinstance(e, TaskEvent) and e.kind is TaskEventKind.SENT for e in events)
    return [(e.task_id, e.name, e.queue) for e in events if isinstance(e, TaskEvent)]


def test_each_message_published_has_its_sent_event(app: Forkq) -> None:
    one = app.send_task("add", (1, 2))
    many = app.tasks["add"].map([(1, 1), (2, 2)])
    assert sent(app) == [(r.id, "add", "default") for r in (one, *many)]
    assert app.broker.size("default") == 3


def test_no_sent_events_unless_asked(app: Forkq) -> None:
    app.configure(events_sent=False)
    app.send_task("add", (1, 2))
    assert app.backend.last_event_offset() is None


def test_an_unreachable_events_store_costs_the_event_not_the_publish(app: Forkq) -> None:
    app.configure(events_url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    result = app.send_task("add", (1, 2))
    app.tasks["add"].map([(1, 1)])
    assert app.broker.size("default") == 2 and result.id
    assert app.sent_events.dropped == 2


def test_celery_event_settings_are_forkq_s() -> None:
    app = Forkq("t", broker="memory://celery-names")
    app.config_from_object({"worker_send_task_events": True, "task_send_sent_event": True})
    assert app.settings.events and app.settings.events_sent
