"""Messages in and out of each queue over time, from task events, at given times."""

from __future__ import annotations

import pytest

from forkq.events import TaskEvent, TaskEventKind, queue_rates
from forkq.events.queue_rates import QueueRates, Way

K = TaskEventKind
NOW = 10_005.0  # the middle of bucket 1000 (10,000 to 10,010)


def event(kind: TaskEventKind, at: float, queue: str = "q") -> TaskEvent:
    return TaskEvent(kind, f"t-{at}", "add", queue, at)


def test_in_counts_received_and_out_every_way_a_message_leaves() -> None:
    rates = QueueRates(step=10, span=60)
    for _ in range(6):
        rates.fold(event(K.RECEIVED, NOW - 25))
    for kind in (K.STARTED, K.SUCCEEDED, K.FAILED, K.RETRIED, K.REVOKED, K.REJECTED):
        rates.fold(event(kind, NOW - 5))
    flow = rates.read("q", NOW)
    assert flow.counted_in is Way.RECEIVED
    assert flow.came_in == [0, 0, 0, 6, 0, 0]  # buckets 995 to 1000, oldest first
    assert flow.went_out == [0, 0, 0, 0, 0, 5]  # started is not a way out
    assert (flow.in_per_second, flow.out_per_second) == (6 / 55, 5 / 55)  # 5 s into the newest


def test_a_queue_whose_clients_send_events_counts_what_they_sent() -> None:
    rates = QueueRates(step=10, span=60)
    rates.fold(event(K.SENT, NOW - 1))
    rates.fold(event(K.SENT, NOW - 1))
    rates.fold(event(K.RECEIVED, NOW - 1))
    rates.fold(event(K.RECEIVED, NOW - 1, queue="other"))
    assert rates.read("q", NOW).came_in[-1] == 2  # the received one is not counted again
    assert rates.read("other", NOW).counted_in is Way.RECEIVED
    assert rates.queues == ["other", "q"]


def test_buckets_older_than_the_span_are_dropped_and_not_read() -> None:
    rates = QueueRates(step=10, span=60)
    rates.fold(event(K.SUCCEEDED, NOW - 500))
    rates.fold(event(K.SUCCEEDED, NOW))
    assert rates.read("q", NOW).went_out == [0, 0, 0, 0, 0, 1]
    assert len(rates._counts["q"]) == 1  # the old bucket went when the new one came
    assert rates.read("nowhere", NOW).came_in == [0] * 6


def test_an_event_dated_ahead_is_not_counted_and_queues_are_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rates = QueueRates(step=10, span=60)
    rates.fold(event(K.SUCCEEDED, NOW + 86_400))  # a skewed clock, a day ahead
    rates.fold(event(K.SUCCEEDED, NOW))
    assert rates.read("q", NOW).went_out == [0, 0, 0, 0, 0, 1]
    rates.fold(event(K.SUCCEEDED, NOW + 1))  # still counted once the day-ahead bucket went
    assert rates.read("q", NOW + 1).went_out[-1] == 2
    monkeypatch.setattr(queue_rates, "QUEUES_KEPT", 2)
    rates.fold(event(K.SUCCEEDED, NOW - 30, queue="old"))
    rates.fold(event(K.SUCCEEDED, NOW, queue="new"))
    assert rates.queues == ["new", "q"]  # "old", the least recent, forgotten
