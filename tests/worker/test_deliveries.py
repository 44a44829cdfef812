"""Which deliveries the executor charges and refuses: the redelivery limit (checked before a
message's bytes are read when they may be what kills the process), returned deliveries'
counted starts, and the master's verdict on a task killed for its hard time limit."""

from __future__ import annotations

import msgspec

from forkq.engines.contract import Delivery
from forkq.envelope import Codec, Message
from forkq.result import encode_record, failure_record
from forkq.states import FAILURE
from forkq.worker.executor import returned_key
from tests.worker.harness import Harness, task


def test_too_many_deliveries_fail_as_worker_lost(h: Harness) -> None:
    result = task(h, lambda: None, name="noop").delay()
    for _ in range(h.app.settings.max_deliveries):  # each fetch a child died holding it
        h.child_died_holding(h.fetch())
    h.run_next()
    record = h.record(result.id)
    assert (record.state, record.exc_type) == (FAILURE, "WorkerLost")
    assert h.dead_reasons()[0].startswith("worker lost")


class SlotWatchingCodec(Codec):
    """Records the slot as decoding begins: what the master would read if the child died."""

    def __init__(self, h: Harness) -> None:
        super().__init__(secret=None, max_bytes=h.app.settings.max_message_bytes)
        self.h, self.seen_slots, self.decoded = h, [], 0

    def decode(self, data: bytes) -> Message:
        self.seen_slots.append(self.h.scoreboard.read(0))
        self.decoded += 1
        return super().decode(data)


def test_the_slot_holds_the_message_before_its_bytes_are_read(h: Harness) -> None:
    h.app.codec = codec = SlotWatchingCodec(h)
    task(h, lambda: None, name="noop").delay()
    delivery = h.fetch()
    h.executor.handle(delivery)
    [slot] = codec.seen_slots
    assert (slot.state.name, slot.receipt) == ("BUSY", delivery.receipt)


def test_a_message_over_every_limit_whose_rejection_died_is_not_read_again(h: Harness) -> None:
    h.app.codec = codec = SlotWatchingCodec(h)
    result = task(h, lambda: None, name="noop").delay()
    limit = h.app.settings.max_deliveries
    for _ in range(limit + 1):  # the last one died while it was being rejected
        h.child_died_holding(h.fetch())
    h.run_next()
    assert codec.decoded == 0
    assert h.record(result.id).exc_type == "WorkerLost"  # its id found without decoding
    assert h.dead_reasons() == [
        f"worker lost: the process handling it died {limit + 1} time(s), the limit is {limit}"
    ]


def test_a_returned_delivery_is_charged_only_for_the_starts_counted(h: Harness) -> None:
    """A returned delivery (RabbitMQ: its holder's connection dropped) counts the lost
    delivery as a start; returned deliveries that started are counted in the result
    backend, so one that came back many times without starting still runs."""
    result = task(h, lambda: "ran", name="ok").delay()
    delivery = msgspec.structs.replace(h.fetch(), delivery_count=2, returned=True)
    h.executor.handle(delivery)
    assert result.get(timeout=1) == "ran"
    # Done with, its count is forgotten: the same bytes sent again (a requeued dead letter)
    # start afresh.
    assert h.app.backend.count_start(returned_key(delivery.body), 60) == 1


def test_a_returned_delivery_that_keeps_starting_ends_as_worker_lost(h: Harness) -> None:
    result = task(h, lambda: "ran", name="ok").delay()
    delivery = msgspec.structs.replace(h.fetch(), delivery_count=2, returned=True)
    for _ in range(2):  # two earlier returned deliveries started, and their processes died
        h.app.backend.count_start(returned_key(delivery.body), 60)
    h.executor.handle(delivery)
    assert h.record(result.id).exc_type == "WorkerLost"
    assert h.dead_reasons() == [
        "worker lost: the process handling it died 3 time(s), the limit is 3"
    ]


def returned(h: Harness) -> Delivery:
    """The next message, as RabbitMQ brings back one whose holder's connection closed."""
    return msgspec.structs.replace(h.fetch(), delivery_count=2, returned=True)


def test_a_returned_task_killed_for_its_time_limit_is_dead_lettered_not_run(h: Harness) -> None:
    """The master stored its FAILURE but could not dead-letter it (the engine recovers by
    connection): the child that gets it back does."""
    ran: list[int] = []
    result = task(h, lambda: ran.append(1), name="slow").delay()
    reason = "hard time limit exceeded: the process running slow was killed"
    failure = encode_record(failure_record("TimeLimitExceeded", reason))
    h.app.backend.store(result.id, FAILURE, failure, 60)
    h.executor.handle(returned(h))
    assert ran == [] and h.dead_reasons() == [reason]
    assert h.app.backend.get(result.id).payload == failure  # the master's, untouched
    assert h.scoreboard.read(0).failed == 1


def test_a_redelivery_the_masters_release_missed_is_dead_lettered_not_run(h: Harness) -> None:
    """Where the master releases, its release buries the message of a task killed for its
    time limit; if that release never landed (an outage outlasting the lease, the whole
    worker dying in between), the message comes back by lease, counted: the FAILURE the
    master stored first still stops it."""
    ran: list[int] = []
    result = task(h, lambda: ran.append(1), name="slow").delay()
    h.child_died_holding(h.fetch())
    reason = "hard time limit exceeded: the process running slow was killed"
    h.app.backend.store(
        result.id, FAILURE, encode_record(failure_record("TimeLimitExceeded", reason)), 60
    )
    h.run_next()
    assert ran == [] and h.dead_reasons() == [reason]


def test_a_first_delivery_is_not_checked_for_the_masters_verdict(h: Harness) -> None:
    """A first delivery never ran anywhere: no read of the result backend, whatever it holds."""
    result = task(h, lambda: "ran", name="ok").delay()
    failure = failure_record("TimeLimitExceeded", "hard time limit exceeded")
    h.app.backend.store(result.id, FAILURE, encode_record(failure), 60)
    h.run_next()
    assert result.get(timeout=1) == "ran"


def test_a_junk_failure_stored_for_a_returned_task_is_no_verdict(h: Harness) -> None:
    result = task(h, lambda: "ran", name="ok").delay()
    h.app.backend.store(result.id, FAILURE, b"\xffnot a record", 60)
    h.executor.handle(returned(h))
    assert result.get(timeout=1) == "ran"
