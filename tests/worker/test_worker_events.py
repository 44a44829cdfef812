"""The master's events on the memory engine's store: online, a heartbeat with each child's
scoreboard row and memory, offline; the task events of tasks it ended, sent with the next
heartbeat (not before: one add_events per tick)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Sequence

import pytest

from forkq.engines.contract import READ_MAX, ResultBackend
from forkq.engines.registry import open_backend
from forkq.events import TaskEvent, TaskEventKind, WorkerEvent, WorkerEventKind, decode
from forkq.pool.scoreboard import Scoreboard
from forkq.worker.task_events import EventBuffer
from forkq.worker.worker_events import WorkerEvents

QUEUES = ("default", "high")


class Pool:
    """Two children: slot 1 busy with a task after finishing two, its child replaced three
    times; slot 0 idle; their pids this process's (a live process, so /proc has its memory)."""

    def __init__(self) -> None:
        self.concurrency = 2
        self.restarts = {1: 3}
        self.scoreboard = Scoreboard(2)
        idle, busy = self.scoreboard.writer(0), self.scoreboard.writer(1)
        for slot in (idle, busy):
            slot.start(os.getpid())
            slot.idle()
        for n in range(2):
            busy.taken(f"r{n}")
            busy.busy(f"done-{n}", "add", f"r{n}", "default", None)
            busy.finished(failed=False)
        busy.taken("r9")
        busy.busy("running-id", "slow", "r9", "high", None)

    def child_slots(self) -> Sequence[tuple[int, int]]:
        return [(1, os.getpid()), (0, os.getpid())]


@pytest.fixture
def store() -> Iterator[ResultBackend]:
    backend = open_backend(f"memory://{uuid.uuid4().hex}")
    yield backend
    backend.close()


def stored(store: ResultBackend) -> list[WorkerEvent | TaskEvent | None]:
    return [decode(e.body) for e in store.read_events(None, READ_MAX).events]


def test_online_heartbeat_offline_with_the_pool_rows_and_memory(store: ResultBackend) -> None:
    pool = Pool()
    events = WorkerEvents(EventBuffer(store, 1000), "w.1", "host-a", lambda: QUEUES)
    try:
        events.attach(pool)
        events.heartbeat()
        events.stopped()
        started = pool.scoreboard.read(1).started_at
    finally:
        pool.scoreboard.close()
    online, beat, offline = stored(store)
    assert isinstance(online, WorkerEvent) and online.kind is WorkerEventKind.ONLINE
    assert isinstance(offline, WorkerEvent) and offline.kind is WorkerEventKind.OFFLINE
    assert isinstance(beat, WorkerEvent) and beat.kind is WorkerEventKind.HEARTBEAT
    assert (beat.worker, beat.host, beat.pid, beat.queues) == ("w.1", "host-a", os.getpid(), QUEUES)
    assert beat.concurrency == 2 and beat.master_rss > 0 and beat.master_uss > 0
    rows = [(r.index, r.state, r.task_id, r.task_name, r.tasks_done) for r in beat.children]
    assert rows == [(0, "idle", "", "", 0), (1, "busy", "running-id", "slow", 2)]
    idle, busy = beat.children
    assert (idle.started_at, idle.restarts) == (0.0, 0)
    assert busy.restarts == 3
    assert busy.started_at == started > 0
    assert all(r.rss > 0 and r.pss > 0 and r.pid == os.getpid() for r in beat.children)


def test_the_tasks_the_master_ended_go_with_the_next_heartbeat(store: ResultBackend) -> None:
    pool = Pool()
    events = WorkerEvents(EventBuffer(store, 1000), "w.1", "host-a", lambda: QUEUES)
    try:
        events.attach(pool)
        seen = pool.scoreboard.read(1)
        events.task_ended(TaskEventKind.REVOKED, seen, 1, "terminated while running")
        events.task_ended(TaskEventKind.FAILED, seen, 1, "TimeLimitExceeded: hard time limit")
        assert len(stored(store)) == 1  # held until the tick
        events.heartbeat()
    finally:
        pool.scoreboard.close()
    _, revoked, failed, beat = stored(store)
    assert isinstance(beat, WorkerEvent) and beat.kind is WorkerEventKind.HEARTBEAT
    assert isinstance(revoked, TaskEvent) and isinstance(failed, TaskEvent)
    assert (revoked.kind, revoked.task_id, revoked.name, revoked.queue, revoked.child) == (
        TaskEventKind.REVOKED,
        "running-id",
        "slow",
        "high",
        1,
    )
    assert revoked.runtime is None and revoked.reason == "terminated while running"
    assert failed.kind is TaskEventKind.FAILED and failed.worker == "w.1"
    assert failed.runtime is not None and 0 <= failed.runtime < time.time() - seen.started_at + 1
