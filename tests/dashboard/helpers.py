"""What the dashboard's tests share: events to publish, a dashboard on a SQLite store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from starlette.testclient import TestClient

from forkq.app import Forkq
from forkq.dashboard.app import build
from forkq.dashboard.config import DashboardConfig
from forkq.dashboard.feed import Feed
from forkq.events import ChildRow, TaskEvent, TaskEventKind, WorkerEvent, WorkerEventKind, encode

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
MIB = 1 << 20


def heartbeat(
    host: str, worker: str = "w1", at: float | None = None, busy: str = "",
    started_at: float = 0.0, restarts: int = 0,
) -> bytes:  # fmt: skip
    child = ChildRow(
        0, 4242, "busy" if busy else "idle", busy, "e2eapp.add" if busy else "", 7,
        rss=30 * MIB, pss=18 * MIB, uss=8 * MIB, shared=22 * MIB,
        started_at=started_at, restarts=restarts,
    )  # fmt: skip
    return encode(
        WorkerEvent(
            WorkerEventKind.HEARTBEAT,
            worker,
            host,
            4000,
            at or time.time(),
            ("default",),
            1,
            (child,),
            master_rss=40 * MIB,
            master_pss=25 * MIB,
            master_uss=6 * MIB,
        )
    )


def task_event(
    kind: TaskEventKind, task_id: str, name: str = "e2eapp.add", **fields: object
) -> bytes:
    at = float(fields.pop("at", time.time()))  # type: ignore[arg-type]
    queue = str(fields.pop("queue", "default"))
    return encode(TaskEvent(kind, task_id, name, queue, at, "w1", 0, **fields))  # type: ignore[arg-type]


@contextmanager
def dashboard(
    url: str, bodies: list[bytes], app: Forkq | None = None, **options: object
) -> Iterator[TestClient]:
    """A dashboard (its lifespan run: history read) on the store at `url` holding `bodies`,
    of `app` (a plain app on `url` by default)."""
    writer = Forkq("writer", broker=url)
    if bodies:
        writer.backend.add_events(bodies, 1000)
    writer.close()
    app = app or Forkq("dash", broker=url)
    config = DashboardConfig(**options)  # type: ignore[arg-type]
    with TestClient(build(config, Feed(app, url)), base_url="http://127.0.0.1:5555") as client:
        yield client


def page_showing(client: TestClient, path: str, text: str, timeout: float = 10.0) -> str:
    """The page once it shows `text` (what the broker holds is read a moment after start, or
    after a page asks), or as it is after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        page = client.get(path).text
        if text in page or time.monotonic() > deadline:
            return page
        time.sleep(0.05)
