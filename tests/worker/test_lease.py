"""A child whose delivery another worker took over (its worker cut off from the broker past
lease_ttl: worker/lease.py) neither starts it nor stores or acks anything for it; and the run
it stores a result for writes with its attempt, so that a late write never overwrites the
record of a newer run (the results' fencing, tests/engines/test_fencing_conformance.py)."""

from __future__ import annotations

import msgspec
import pytest

from forkq.engines.contract import Consumer, Delivery
from forkq.envelope import Message
from forkq.result import encode_record, success_record
from forkq.states import SUCCESS
from forkq.worker.lease import LOST_LEASE, run_fence
from forkq.worker.observe import Observers, Rejected
from tests.worker.harness import Harness, task

LOST = "lost its lease to another worker"


def taken_over(h: Harness, delivery: Delivery) -> Delivery:
    """What a lease takeover does: the message back, counted, and held by another worker's
    consumer."""
    h.child_died_holding(delivery)
    other = h.app.broker.consumer(Consumer.of_child("other", 0, 2), h.app.backend)
    [newer] = other.fetch([h.queue], 1, 0)
    return newer


def store_as(h: Harness, task_id: str, value: str, delivery: Delivery) -> None:
    """As the run of `delivery` stores its result (the executor's fence)."""
    payload = encode_record(success_record(value))
    fence = run_fence(h.app.codec.decode(delivery.body), delivery)
    h.app.backend.store(task_id, SUCCESS, payload, h.app.settings.result_ttl, fence)


def long_held(delivery: Delivery) -> Delivery:
    """As if held for ever: the child asks the broker (half a lease had passed)."""
    return msgspec.structs.replace(delivery, held_since=0.0)


def test_a_delivery_taken_over_before_it_started_is_not_started(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[int] = []
    result = task(h, lambda: ran.append(1), name="noted").delay()
    stale = h.fetch()
    taken_over(h, stale)
    assert h.executor.handle(long_held(stale)) is False
    assert ran == [] and h.app.backend.get(result.id) is None
    assert f"message {stale.receipt} of queue {h.queue} {LOST}" in caplog.text
    assert "not started here" in caplog.text
    assert h.scoreboard.read(0).receipt != stale.receipt  # nothing charged to this child


class Reasons:
    """An observer that keeps the reason of each run's end (its events carry it)."""

    def __init__(self) -> None:
        self.ended: list[str] = []

    def received(self, message: Message, queue: str) -> None: ...

    def started(self, message: Message, queue: str) -> None: ...

    def finished(
        self, message: Message, queue: str, state: str, runtime: float, reason: str, at: float
    ) -> None:
        self.ended.append(reason)

    def rejected(self, rejection: Rejected) -> None: ...


def test_a_run_whose_lease_was_taken_stores_nothing_and_acks_nothing(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    held: list[Delivery] = []
    h.executor.observers = Observers([told := Reasons()])

    def cut_off() -> str:  # meanwhile, another worker took it over and stored its result
        newer = taken_over(h, held[0])
        held.append(newer)
        store_as(h, result.id, "newer", newer)
        return "stale"

    result = task(h, cut_off, name="cut_off").delay()
    held.append(long_held(h.fetch()))
    assert h.executor.handle(held[0]) is True
    assert h.record(result.id).result == "newer"
    assert "its outcome not stored, not acked" in caplog.text
    assert told.ended == [LOST_LEASE]  # the duplicate run is told as one
    assert h.app.broker.size(h.queue) == 1  # the newer holder's, not acked by the stale one


def test_a_stale_write_that_passed_the_check_is_refused_by_its_attempt(h: Harness) -> None:
    """The window the check leaves (a write landing late): the record's attempt fences it."""

    def raced() -> str:
        store_as(h, result.id, "newer", msgspec.structs.replace(held, delivery_count=2))
        return "stale"

    result = task(h, raced, name="raced").delay()
    held = h.fetch()  # held a moment: the check trusts it, and the write is the stale one
    h.executor.handle(held)
    assert h.record(result.id).result == "newer"


def test_a_run_stores_with_the_fence_of_its_sending_and_delivery(h: Harness) -> None:
    result = task(h, lambda: "done", name="plain").delay()
    first = h.fetch()
    h.child_died_holding(first)
    h.run_next()  # its second start
    store_as(h, result.id, "first start, late", first)
    assert h.record(result.id).result == "done"
    again = task(h, lambda: "again", name="again").apply_async(task_id=result.id)
    h.run_next()  # the same id sent again: its first run's result is stored
    assert h.record(again.id).result == "again"
