"""The master's side of a dead child, on the memory engine: what its slot said it held goes
back, is acked, or (a task killed for its hard time limit) is failed and dead-lettered; where
the engine recovers by connection, nothing is released."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator

import pytest

from forkq import Forkq
from forkq.engines.contract import (
    Capabilities,
    Consumer,
    ConsumerSession,
    Delivery,
    Recovery,
    outgoing,
)
from forkq.pool.bulletin import Bulletin
from forkq.pool.exits import ChildExit
from forkq.pool.scoreboard import SlotState, SlotView
from forkq.pool.watch import Ending, Verdict
from forkq.result import decode_record
from forkq.states import FAILURE, REVOKED
from forkq.worker.revoked import MASTER_BACKSTOP, RevokedIds
from forkq.worker.supervision import WorkerSupervision

WORKER, INDEX, PID = "w", 0, 4242
QUEUE = "default"


@pytest.fixture
def app() -> Iterator[Forkq]:
    app = Forkq("t", broker=f"memory://{uuid.uuid4().hex}")
    yield app
    app.close()


def child_session(app: Forkq) -> ConsumerSession:
    """The session the dead child had (its broker is the master's here: one process)."""
    return app.broker.consumer(Consumer.of_child(WORKER, INDEX, PID), app.backend)


def held(app: Forkq, bodies: list[bytes]) -> list[Delivery]:
    """The child fetched these, in this order."""
    app.broker.publish([outgoing(QUEUE, body) for body in bodies])
    return child_session(app).fetch([QUEUE], len(bodies), 0)


def busy_with(delivery: Delivery, unacked: tuple[tuple[str, str], ...] = ()) -> SlotView:
    return SlotView(
        pid=PID,
        state=SlotState.BUSY,
        started_at=0.0,
        heartbeat=0.0,
        deadline=1.0,
        done=0,
        failed=0,
        task_id="task-1",
        receipt=delivery.receipt,
        queue=delivery.queue,
        task_name="slow",
        unacked=unacked,
    )


def killed(seen: SlotView, reason: Ending | None = None) -> ChildExit:
    return ChildExit(INDEX, PID, signal.SIGKILL, seen, reason)


def deliveries(app: Forkq) -> dict[bytes, int]:
    """What is free in the queue now: each body with its delivery count."""
    taker = app.broker.consumer(Consumer.of_child("other", 0, 1), app.backend)
    return {d.body: d.delivery_count for d in taker.fetch([QUEUE], 10, 0)}


def test_a_dead_childs_running_message_goes_back_counted_the_rest_uncounted(app: Forkq) -> None:
    running, finished, _ = held(app, [b"running", b"finished", b"prefetched"])
    seen = busy_with(running, unacked=((finished.queue, finished.receipt),))
    WorkerSupervision(app, WORKER).child_exited(killed(seen))
    # Its next delivery is its second (counted); the finished one is acked, not run again.
    assert deliveries(app) == {b"running": 2, b"prefetched": 1}
    assert app.broker.dead_letters() == []


def test_a_task_killed_for_its_time_limit_is_failed_and_its_verdict_dead_letters_it(
    app: Forkq,
) -> None:
    running, _ = held(app, [b"running", b"prefetched"])
    supervision = WorkerSupervision(app, WORKER)
    supervision.child_exited(killed(busy_with(running), Ending.TIME_LIMIT))
    assert supervision.unreleased == []
    [letter] = app.broker.dead_letters()
    assert (letter.body, letter.queue) == (b"running", QUEUE)
    assert letter.reason == "hard time limit exceeded: the process running slow was killed"
    stored = app.backend.get("task-1")
    assert stored is not None
    record = decode_record(stored.payload)
    assert (record.state, record.exc_type) == (FAILURE, "TimeLimitExceeded")
    assert deliveries(app) == {b"prefetched": 1}


def test_where_the_engine_recovers_by_connection_nothing_is_released(
    app: Forkq, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RabbitMQ: the server gives back what the dead child's connection held. The master
    makes no release call (one would raise) and still stores the time limit's FAILURE."""
    running, _ = held(app, [b"running", b"prefetched"])
    broker = app.broker
    monkeypatch.setattr(broker, "capabilities", Capabilities(Recovery.CONNECTION))
    calls: list[Consumer] = []
    monkeypatch.setattr(broker, "release", lambda consumer, leftovers=None: calls.append(consumer))
    supervision = WorkerSupervision(app, WORKER)
    supervision.child_exited(killed(busy_with(running), Ending.TIME_LIMIT))
    assert (calls, supervision.unreleased) == ([], [])
    assert app.broker.dead_letters() == []
    assert deliveries(app) == {}  # still held by the child's consumer: no one released them
    stored = app.backend.get("task-1")
    assert stored is not None and decode_record(stored.payload).exc_type == "TimeLimitExceeded"


def test_a_child_terminated_for_a_revoked_task_stores_revoked_and_gives_it_back(
    app: Forkq,
) -> None:
    """Its message goes back counted, for the next consumer to discard on reading the record
    (executor): the master holds only its receipt, not what a discard also does (its
    workflow, its lock)."""
    running, finished, _ = held(app, [b"running", b"finished", b"prefetched"])
    seen = busy_with(running, unacked=((finished.queue, finished.receipt),))
    supervision = WorkerSupervision(app, WORKER)
    supervision.child_exited(killed(seen, Ending.REVOKED))
    assert supervision.unreleased == []
    stored = app.backend.get("task-1")
    assert stored is not None
    record = decode_record(stored.payload)
    assert (record.state, record.exc_type, record.exc_message, record.name) == (
        REVOKED,
        "TaskRevoked",
        "terminated while running",
        "slow",
    )
    assert deliveries(app) == {b"running": 2, b"prefetched": 1}  # the finished one acked
    assert app.broker.dead_letters() == []


@pytest.mark.parametrize(
    ("reason", "state", "why"),
    [(Ending.REVOKED, REVOKED, "terminated while running"),
     (Ending.TIME_LIMIT, FAILURE, "hard time limit exceeded: the process running slow was killed")],
)  # fmt: skip
def test_why_a_task_ends_is_stored_before_its_child_is_signalled(
    app: Forkq, reason: Ending, state: str, why: str
) -> None:
    """RabbitMQ gives the message back as the child's connection closes, before the master
    reaps it: the consumer that fetches it then reads this record, and discards it (revoked)
    or dead-letters it (its time limit) rather than running it again."""
    (running,) = held(app, [b"running"])
    seen = busy_with(running)
    WorkerSupervision(app, WORKER).child_ending(Verdict(PID, 15, reason, "task-1"), seen)
    stored = app.backend.get("task-1")
    assert stored is not None
    record = decode_record(stored.payload)
    assert (record.state, record.exc_message) == (state, why)
    assert deliveries(app) == {}  # nothing released: the child still holds it


@pytest.mark.parametrize("reason", [Ending.SHRINK, Ending.MEMORY])
def test_a_child_ended_for_itself_has_nothing_stored_before(app: Forkq, reason: Ending) -> None:
    (running,) = held(app, [b"running"])
    WorkerSupervision(app, WORKER).child_ending(Verdict(PID, 15, reason), busy_with(running))
    assert app.backend.get("task-1") is None


def test_a_child_that_moved_on_has_nothing_stored_for_its_next_task(app: Forkq) -> None:
    (running,) = held(app, [b"running"])
    verdict = Verdict(PID, 15, Ending.REVOKED, "task-0")  # what it ran when it was judged
    WorkerSupervision(app, WORKER).child_ending(verdict, busy_with(running))
    assert app.backend.get("task-1") is None and app.backend.get("task-0") is None


def test_the_tick_keeps_the_masters_revoked_ids_current_for_the_children_it_forks(
    app: Forkq,
) -> None:
    bulletin = Bulletin()
    try:
        revoked = RevokedIds(app.backend, bulletin.reader(), MASTER_BACKSTOP)
        revoked.refresh()
        supervision = WorkerSupervision(app, WORKER, [QUEUE], None, bulletin, revoked)
        app.backend.revoke(["heard", "also"], 60)
        supervision.tick()  # nothing posted, the backstop a minute away: not read yet
        assert len(revoked) == 0
        bulletin.post_revoke()  # the master heard of it
        supervision.tick()
        assert len(revoked) == 2 and revoked.revoked("heard")
    finally:
        bulletin.close()
