"""A child's task events: the buffer (batches, its bound, drops, the back-off after a failed
flush) on the memory engine's event store, and the consume loop that flushes it, in this
process (an idle child holds no events while it waits for work)."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator, Sequence
from types import FrameType

import pytest

from forkq import Forkq
from forkq.engines.contract import READ_MAX, ResultBackend
from forkq.engines.registry import open_backend
from forkq.events import TaskEvent, TaskEventKind, decode
from forkq.exceptions import BackendUnavailable
from forkq.pool.child import EXIT_OK, StopSignal
from forkq.pool.scoreboard import Scoreboard
from forkq.worker.consume import ConsumeOptions, ConsumeProgram
from forkq.worker.task_events import BACKOFF_MAX, BACKOFF_MIN, SLOW, STALLED, EventBuffer

pytestmark = pytest.mark.timeout(30)

QUEUE = "default"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Flaky:
    """An event store that fails while `down` (as an unreachable one does), after `stall`
    seconds of the clock (a timeout), else keeps what it is given in the memory engine's
    store; counts the attempts."""

    def __init__(self, store: ResultBackend, clock: Clock | None = None) -> None:
        self.store, self.down, self.attempts = store, False, 0
        self.clock, self.stall = clock, 0.0

    def add_events(self, bodies: Sequence[bytes], kept: int) -> None:
        self.attempts += 1
        if self.clock is not None:
            self.clock.now += self.stall
        if self.down:
            raise BackendUnavailable("events store unreachable")
        self.store.add_events(bodies, kept)


@pytest.fixture
def store() -> Iterator[ResultBackend]:
    backend = open_backend(f"memory://{uuid.uuid4().hex}")
    yield backend
    backend.close()


def kept(store: ResultBackend) -> list[TaskEvent]:
    events = [decode(e.body) for e in store.read_events(None, READ_MAX).events]
    return [e for e in events if isinstance(e, TaskEvent)]


def event(n: int) -> TaskEvent:
    return TaskEvent(TaskEventKind.STARTED, f"id-{n}", "add", QUEUE, 0.0, "w", 0)


def test_a_batch_is_flushed_in_one_add_once_full(store: ResultBackend) -> None:
    flaky, clock = Flaky(store), Clock()
    buffer = EventBuffer(flaky, 1000, batch=10, clock=clock)
    for n in range(9):
        buffer.add(event(n))
        buffer.flush_if_due()
    assert flaky.attempts == 0 and kept(store) == []
    buffer.add(event(9))
    buffer.flush_if_due()
    assert flaky.attempts == 1
    assert [e.task_id for e in kept(store)] == [f"id-{n}" for n in range(10)]


def test_a_few_events_are_flushed_once_the_oldest_is_old_enough(store: ResultBackend) -> None:
    clock = Clock()
    buffer = EventBuffer(store, 1000, batch=100, max_age=1.0, clock=clock)
    buffer.add(event(0))
    clock.now += 0.9
    buffer.add(event(1))
    buffer.flush_if_due()
    assert kept(store) == []
    clock.now += 0.1
    buffer.flush_if_due()
    assert len(kept(store)) == 2


def test_beyond_its_bound_an_event_is_dropped_and_counted(store: ResultBackend) -> None:
    heard: list[int] = []
    buffer = EventBuffer(store, 1000, heard.append, bound=5, batch=100)
    for n in range(8):
        buffer.add(event(n))
    assert buffer.dropped_total == 3 and sum(heard) == 3
    buffer.flush()
    assert [e.task_id for e in kept(store)] == [f"id-{n}" for n in range(5)]  # the first kept


def test_a_failed_flush_drops_its_batch_and_backs_off(store: ResultBackend) -> None:
    flaky, clock, heard = Flaky(store), Clock(), []
    buffer = EventBuffer(flaky, 1000, heard.append, batch=2, clock=clock)
    flaky.down = True
    buffer.add(event(0))
    buffer.add(event(1))
    buffer.flush_if_due()  # fails: both dropped, counted
    assert flaky.attempts == 1 and heard == [2]
    flaky.down = False
    for n in range(2, 6):  # due, but within the back-off: held, no attempt
        buffer.add(event(n))
        buffer.flush_if_due()
        clock.now += BACKOFF_MIN / 10
    assert flaky.attempts == 1 and kept(store) == []
    clock.now += BACKOFF_MAX
    buffer.flush_if_due()
    assert flaky.attempts == 2
    assert [e.task_id for e in kept(store)] == [f"id-{n}" for n in range(2, 6)]
    assert buffer.dropped_total == 2


def test_a_store_that_stalls_costs_at_most_a_small_share_of_the_time(
    store: ResultBackend,
) -> None:
    clock = Clock()
    flaky = Flaky(store, clock)
    flaky.down, flaky.stall = True, 5.0  # each attempt waits out a 5 s timeout, then fails
    buffer = EventBuffer(flaky, 1000, batch=1, clock=clock)
    start = clock.now
    while clock.now - start < 1000:
        buffer.add(event(0))
        buffer.flush_if_due()
        clock.now += 0.01  # a task
    stalled = flaky.attempts * flaky.stall
    assert flaky.attempts >= 2 and stalled / (clock.now - start) <= 1 / STALLED * 1.05


def test_a_store_that_answers_slowly_is_given_a_rest_and_nothing_is_dropped(
    store: ResultBackend,
) -> None:
    clock = Clock()
    flaky = Flaky(store, clock)
    flaky.stall = 3.0  # answers, but only after 3 s
    buffer = EventBuffer(flaky, 1000, batch=1, clock=clock)
    buffer.add(event(0))
    buffer.flush_if_due()
    for n in range(1, 4):  # held meanwhile: no attempt for STALLED times that long
        clock.now += STALLED * flaky.stall / 4
        buffer.add(event(n))
        buffer.flush_if_due()
    assert flaky.attempts == 1 and len(buffer.bodies) == 3
    clock.now += STALLED * flaky.stall / 4
    flaky.stall = SLOW / 2
    buffer.flush_if_due()
    assert flaky.attempts == 2 and buffer.dropped_total == 0
    assert [e.task_id for e in kept(store)] == [f"id-{n}" for n in range(4)]


def test_the_last_flush_sends_what_is_held_or_counts_it_dropped(store: ResultBackend) -> None:
    flaky, clock, heard = Flaky(store), Clock(), []
    buffer = EventBuffer(flaky, 1000, heard.append, batch=100, clock=clock)
    buffer.add(event(0))
    buffer.flush(final=True)  # not due, but the process leaves
    assert [e.task_id for e in kept(store)] == ["id-0"]
    flaky.down = True
    buffer.add(event(1))
    buffer.flush()  # fails: a back-off
    buffer.add(event(2))
    buffer.add(event(3))
    buffer.flush(final=True)  # within the back-off: not tried, counted
    assert flaky.attempts == 2 and buffer.bodies == []
    assert heard == [1, 2] and buffer.dropped_total == 3


def test_an_unreachable_store_costs_a_drop_not_an_error() -> None:
    backend = open_backend("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        buffer = EventBuffer(backend, 1000, batch=1)
        buffer.add(event(0))
        buffer.flush_if_due()
        assert buffer.dropped_total == 1 and buffer.bodies == []
    finally:
        backend.close()


# -- the consume loop ---------------------------------------------------------------------


@pytest.fixture
def app() -> Iterator[Forkq]:
    app = Forkq("t", broker=f"memory://{uuid.uuid4().hex}", events=True)

    @app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="boom")
    def boom() -> None:
        raise ValueError("no luck")

    yield app
    app.close()


def test_an_idle_child_holds_no_events_while_it_waits(app: Forkq, stop: StopSignal) -> None:
    """Two tasks, far fewer events than a batch: once the queue is empty, the child flushes
    before it waits for more. What the store holds is read while it waits (SIGALRM), then it
    is stopped (SIGTERM)."""
    added, failed = app.send_task("add", (1, 2)), app.send_task("boom")
    seen: list[TaskEvent] = []

    def look(_signum: int, _frame: FrameType | None) -> None:
        seen.extend(kept(app.backend))
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGALRM, look)
    board = Scoreboard(4)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)  # the fetch that waits lasts 5 s
        program = ConsumeProgram(app, ConsumeOptions("w1", (QUEUE,), 2))
        assert program.run_child(3, board.writer(3), stop) == EXIT_OK
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        board.close()
    kinds = [(e.kind, e.task_id) for e in seen]
    assert kinds == [
        (TaskEventKind.RECEIVED, added.id),
        (TaskEventKind.STARTED, added.id),
        (TaskEventKind.SUCCEEDED, added.id),
        (TaskEventKind.RECEIVED, failed.id),
        (TaskEventKind.STARTED, failed.id),
        (TaskEventKind.FAILED, failed.id),
    ]
    assert {(e.worker, e.child, e.queue) for e in seen} == {("w1", 3, QUEUE)}
    assert seen[-1].reason.endswith("ValueError: no luck") and seen[-1].name == "boom"
    ran = [e.runtime for e in seen if e.kind in (TaskEventKind.SUCCEEDED, TaskEventKind.FAILED)]
    assert all(r is not None and 0 <= r < 1 for r in ran)
