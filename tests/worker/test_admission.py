"""Rate and concurrency limits in the executor, in process on the memory engine: a task over
its limit goes back to wait in the broker, not run, not counted, not retried; its slot goes
when it ends (before a retry is published) or will never run."""

from __future__ import annotations

import time

import msgspec
import pytest

from forkq.engines.contract import Delivery
from forkq.states import FAILURE, RETRY, SUCCESS
from forkq.task import Task
from forkq.throttle import RATE_KEY_HEADER
from forkq.worker.executor import returned_key
from tests.worker.harness import Harness, task


def fetch_within(h: Harness, seconds: float) -> Delivery:
    [delivery] = h.session.fetch([h.queue], 1, seconds)
    return delivery


def runs(h: Harness, fn: object, **options: object) -> tuple[Task, list[tuple[int, int]]]:
    """A bound task that notes (retries, delivery count) of each run."""
    seen: list[tuple[int, int]] = []

    def noted(self: Task, *args: object) -> None:
        seen.append((self.request.retries, self.request.delivery_count))

    return task(h, noted, name=str(fn), bind=True, **options), seen


def test_a_task_over_its_rate_waits_in_the_broker_uncounted(h: Harness) -> None:
    limited, seen = runs(h, "rated", rate_limit="5/s")
    first, second = limited.delay(), limited.delay()
    h.run_next()
    h.run_next()  # too soon: back in the broker, for about 0.2 s
    assert seen == [(0, 1)]
    assert h.app.broker.size(h.queue) == 1
    assert h.session.fetch([h.queue], 1, 0) == []  # delayed, not visible yet
    assert h.scoreboard.read(0).done == 1  # a hold-back is not a task done
    started = time.monotonic()
    h.executor.handle(fetch_within(h, 5))
    assert 0.15 <= time.monotonic() - started <= 1.0
    assert seen == [(0, 1), (0, 1)]  # no retry, no delivery counted
    assert h.record(first.id).state == h.record(second.id).state == SUCCESS


def test_an_unlimited_task_pays_nothing_and_is_never_held_back(h: Harness) -> None:
    plain, seen = runs(h, "plain")
    assert plain.options.throttle is None
    for _ in range(3):
        plain.delay()
    for _ in range(3):
        h.run_next()
    assert len(seen) == 3


def test_each_key_has_its_own_rate(h: Harness) -> None:
    limited, seen = runs(h, "per-user", rate_limit="1/m", rate_limit_key=lambda user: user)
    limited.delay("ann")
    limited.delay("bob")
    limited.apply_async(("ann",), headers={RATE_KEY_HEADER: "carl"})  # the header wins
    limited.delay("ann")
    for _ in range(4):
        h.run_next()
    assert len(seen) == 3
    assert h.app.broker.size(h.queue) == 1  # ann's second, held back


def test_an_override_changes_the_rate_in_force(h: Harness) -> None:
    limited, seen = runs(h, "overridden", rate_limit="1000/s")
    h.app.set_rate_limit(limited.name, "1/m")
    limited.delay()
    limited.delay()
    h.run_next()
    h.run_next()
    assert len(seen) == 1
    h.app.set_rate_limit(limited.name, None)


def test_every_slot_held_sends_it_back_until_one_is_let_go(h: Harness) -> None:
    limited, seen = runs(h, "two", concurrency=1)
    assert h.app.backend.take_slot(limited.name, "", "someone", 1, 60) == 0
    limited.delay()
    h.run_next()
    assert seen == [] and h.app.broker.size(h.queue) == 1
    h.app.backend.release_slot(limited.name, "", "someone")
    h.executor.handle(fetch_within(h, 5))  # its back-off: 0.05 to 0.1 s
    assert seen == [(0, 1)]
    assert h.app.backend.take_slot(limited.name, "", "next", 1, 60) == 0  # let go when done


def test_a_retry_lets_its_slot_go_and_takes_one_again(h: Harness) -> None:
    def flaky(self: Task) -> None:
        if self.request.retries == 0:
            raise self.retry(countdown=0)

    result = task(h, flaky, bind=True, concurrency=1).delay()
    h.run_next()
    assert h.record(result.id).state == RETRY
    assert h.app.backend.take_slot("flaky", "", "other", 1, 60) == 0  # free while it waits
    h.app.backend.release_slot("flaky", "", "other")
    h.run_next()
    assert h.record(result.id).state == SUCCESS
    assert h.app.backend.take_slot("flaky", "", "other", 1, 60) == 0


def test_a_redelivered_task_takes_its_own_slot_again(h: Harness) -> None:
    limited, seen = runs(h, "one", concurrency=1)
    result = limited.delay()
    assert h.app.backend.take_slot(limited.name, "", result.id, 1, 60) == 0  # its dead run's
    h.run_next()
    assert seen == [(0, 1)]
    assert h.app.backend.take_slot(limited.name, "", "other", 1, 60) == 0


def test_a_task_lost_too_often_lets_its_slot_go(h: Harness) -> None:
    limited, seen = runs(h, "lost", concurrency=1)
    result = limited.delay()
    for _ in range(h.app.settings.max_deliveries):  # each run's child died holding the slot
        assert h.app.backend.take_slot(limited.name, "", result.id, 1, 60) == 0
        h.child_died_holding(h.fetch())
    h.run_next()
    assert h.record(result.id).exc_type == "WorkerLost" and seen == []
    assert h.app.backend.take_slot(limited.name, "", "other", 1, 60) == 0


@pytest.mark.parametrize("option", ["rate_limit_key", "concurrency_key"])
def test_a_key_function_that_fails_dead_letters_the_call(h: Harness, option: str) -> None:
    limit = {"rate_limit_key": {"rate_limit": "1/s"}, "concurrency_key": {"concurrency": 1}}
    options = {**limit[option], option: lambda user: {"ann": "a"}[user]}
    limited, seen = runs(h, option, unique_for=60, **options)
    result = limited.delay("bob")
    h.run_next()
    record = h.record(result.id)
    assert record.state == FAILURE and seen == []
    [reason] = h.dead_reasons()
    assert reason == f"task {option}: {option} failed on the call's arguments: KeyError: 'bob'"
    assert limited.delay("bob").id != result.id  # its unique lock went


def test_handle_says_whether_it_held_the_message_back(h: Harness) -> None:
    """The consume loop leaves held-back messages out of its prefetch sizing: they say
    nothing of how long tasks take."""
    limited, seen = runs(h, "said", rate_limit="1/m")
    limited.delay()
    limited.delay()
    assert h.executor.handle(h.fetch()) is True
    assert h.executor.handle(h.fetch()) is False
    assert len(seen) == 1


def test_a_returned_delivery_held_back_keeps_its_counted_start(h: Harness) -> None:
    """RabbitMQ brought it back from a dead holder: that lost delivery counts as a start
    (tests/worker/test_deliveries.py). Held back, it is not done with: when it comes back
    returned again, the start counted the first time still counts, so a task that kills its
    process ends as WorkerLost even when its rate holds it back in between."""
    limited, seen = runs(h, "returning", rate_limit="1/m")
    assert h.app.backend.take_rate(limited.name, "", 60, "someone") == 0  # its slot is taken
    limited.delay()
    delivery = msgspec.structs.replace(h.fetch(), delivery_count=2, returned=True)
    assert h.executor.handle(delivery) is False and seen == []
    assert h.app.backend.count_start(returned_key(delivery.body), 60) == 2  # still counted
