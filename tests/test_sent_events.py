"""A client's `sent` events (setting events_sent): one per message, one add_events per publish
call, after the publish; a store that cannot be reached costs a drop, never the publish. And
Celery's names for the event settings."""

from __future__ import annotations

import socket
import threading
import time
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


def test_a_chords_members_say_their_chord_and_its_body(app: Forkq) -> None:
    from forkq import chord

    result = chord([app.signature("add", (n, n)) for n in range(3)])(app.signature("add", (1,)))
    page = app.backend.read_events(None, READ_MAX)
    events = [e for e in (decode(s.body) for s in page.events) if isinstance(e, TaskEvent)]
    assert result.parent is not None
    assert [(e.group, e.group_size, e.group_body) for e in events] == [
        (result.parent.id, 3, result.id)
    ] * 3  # the body is sent later, by the worker that finishes the last member


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


def test_an_events_url_no_engine_keeps_costs_the_event_not_the_publish(app: Forkq) -> None:
    app.configure(events_url="amqp://guest:guest@127.0.0.1:5672/")  # RabbitMQ keeps no events
    app.send_task("add", (1, 2))
    assert app.broker.size("default") == 1
    assert app.sent_events.dropped == 1


def test_after_a_failure_no_attempt_is_made_for_a_back_off(app: Forkq) -> None:
    # A store that takes each connection and closes it: every attempt is one accept.
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = threading.Semaphore(0)

    def refuse() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.close()
            accepted.release()

    threading.Thread(target=refuse, daemon=True).start()
    try:
        app.configure(events_url=f"redis://127.0.0.1:{listener.getsockname()[1]}/0")
        app.send_task("add", (1, 2))
        assert accepted.acquire(timeout=5)  # the first publish tried
        while accepted.acquire(timeout=0.2):  # and its client's own retries, if any
            pass
        began = time.monotonic()
        for _ in range(5):
            app.send_task("add", (1, 2))
        assert time.monotonic() - began < 1.0  # inside the back-off
        assert not accepted.acquire(timeout=0.2)  # no attempt at all
        assert app.sent_events.dropped == 6 and app.broker.size("default") == 6
    finally:
        listener.close()


def test_celery_event_settings_are_forkq_s() -> None:
    app = Forkq("t", broker="memory://celery-names")
    app.config_from_object({"worker_send_task_events": True, "task_send_sent_event": True})
    assert app.settings.events and app.settings.events_sent
