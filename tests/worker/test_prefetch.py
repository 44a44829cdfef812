"""How many messages a child fetches at once: fixed, or sized to its tasks (`auto`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forkq import Forkq
from forkq.engines.contract import Consumer
from forkq.worker.prefetch import AHEAD, MOST, START, PrefetchSizer
from tests.conftest import StartedSignal, engine_url, redis_test_url, wait_until_serving


def test_a_fixed_prefetch_never_moves() -> None:
    sizer = PrefetchSizer(fixed=3)
    sizer.ran(10, 10.0)
    assert sizer.size() == 3


def test_auto_starts_at_one_then_fetches_about_20_ms_of_work() -> None:
    assert PrefetchSizer().size() == START == 1
    for seconds_per_task, expected in [(0.0001, MOST), (0.004, 4), (0.007, 2), (0.05, 1)]:
        sizer = PrefetchSizer()
        sizer.ran(1, seconds_per_task)  # the first batch, of START
        assert sizer.size() == expected, seconds_per_task


def test_short_tasks_reach_the_most_within_two_batches_even_after_a_slow_first_task() -> None:
    """A child's first task pays for warming up (about 1.3 ms for a no-op on SQLite, against
    0.1 ms after): the size still reaches MOST by the third fetch."""
    sizer = PrefetchSizer()
    sizer.ran(1, 0.0013)
    sizer.ran(sizer.size(), sizer.size() * 0.0001)
    assert sizer.size() == MOST


def test_a_fetch_that_waited_in_vain_starts_the_size_over() -> None:
    """After a lull the next work may be long tasks: a child that ran short ones does not
    take 16 of them while its siblings are free."""
    sizer = PrefetchSizer()
    sizer.ran(16, 16 * 0.0001)
    assert sizer.size() == MOST
    sizer.ran(0, 5.0)
    assert sizer.size() == START


def test_auto_drops_to_one_the_batch_after_tasks_turn_long() -> None:
    sizer = PrefetchSizer()
    for _ in range(20):
        sizer.ran(16, 16 * 0.0001)
    assert sizer.size() == MOST
    sizer.ran(16, 16 * 0.5)
    assert sizer.size() == 1


@given(st.floats(min_value=1e-7, max_value=100.0))
def test_auto_sizes_are_powers_of_two_that_fit_the_work_ahead(seconds_per_task: float) -> None:
    sizer = PrefetchSizer()
    sizer.ran(1, seconds_per_task)
    size = sizer.size()
    assert size in (1, 2, 4, 8, 16)
    assert size == 1 or size * seconds_per_task <= AHEAD
    assert size == MOST or (size * 2) * seconds_per_task > AHEAD


@pytest.fixture(params=["sqlite", "redis"])
def broker_url(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[str]:
    """RabbitMQ is left out: a quorum queue keeps the limit its consumer started with."""
    yield from engine_url(
        request.param, sqlite_url if request.param == "sqlite" else redis_test_url()
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("prefetch", [(), ("--prefetch", "4")], ids=["auto", "fixed-4"])
def test_a_child_running_long_tasks_holds_only_the_one_it_runs(
    client: Forkq, start_worker: Any, e2e_dir: Any, prefetch: tuple[str, ...]
) -> None:
    worker = start_worker("-c", "1", "-l", "info", *prefetch)
    wait_until_serving(client, worker)
    first, second = StartedSignal(e2e_dir, "first"), StartedSignal(e2e_dir, "second")
    client.send_task("e2eapp.announce_then_sleep", (first.path, 0.5))  # a long task, timed
    first.wait()
    # Queued while the child is busy, so that its next fetch finds all three.
    client.send_task("e2eapp.announce_then_sleep", (second.path, 1.0))
    for _ in range(2):
        client.send_task("e2eapp.add", (1, 1))
    second.wait()
    outsider = client.broker.consumer(Consumer("outsider", "outsider/0"), client.backend)
    free = outsider.fetch([client.settings.default_queue], 10, 0)
    # Auto: the child took one; a fixed 4 keeps the other two waiting behind the long task.
    assert len(free) == (0 if prefetch else 2)
    for delivery in free:
        outsider.finish(delivery, None)
