"""Rate and concurrency limits on real workers, on every broker: a rate holds across workers
without occupying a child or using a retry; concurrency=2 never has more than two running,
and a child killed mid-task leaks no slot. Tasks note their starts (and ends) in Redis."""

from __future__ import annotations

import itertools
import os
import signal
import statistics
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from forkq import Forkq, Task
from tests.conftest import E2E_APP, REDIS, StartedSignal, redis_reachable, wait_until_serving

pytestmark = pytest.mark.timeout(180)

LIMITED_TASKS = textwrap.dedent(
    """
    import redis  # before fork: a first import in a task would delay its start by 50 ms

    @app.task(bind=True, rate_limit="10/s")
    def rated(self, counter_url, key):
        counter = COUNTERS.setdefault(counter_url, redis.Redis.from_url(counter_url))
        request = self.request
        counter.rpush(key, f"{time.time()} {request.retries} {request.delivery_count}")

    @app.task(bind=True, concurrency=2)
    def two_at_once(self, counter_url, key, seconds, fifo=None):
        counter = COUNTERS.setdefault(counter_url, redis.Redis.from_url(counter_url))
        counter.rpush(f"{key}:running", counter.incr(f"{key}:now"))
        if fifo and self.request.delivery_count == 1:
            with open(fifo, "w") as announce:
                announce.write(f"started {os.getpid()}\\n")
        time.sleep(seconds)
        counter.decr(f"{key}:now")
    """
)


@pytest.fixture
def broker_url(every_broker_url: str) -> str:
    return every_broker_url


@pytest.fixture
def e2e_dir(tmp_path: Path) -> Path:
    (tmp_path / "e2eapp.py").write_text(E2E_APP + LIMITED_TASKS)
    return tmp_path


@pytest.fixture
def counter() -> Iterator[tuple[redis.Redis, str]]:
    """Where the tasks note what they did: a Redis key prefix of the test's own."""
    if not redis_reachable():
        pytest.skip("these tests note their tasks' starts in Redis on 127.0.0.1:6379")
    client = redis.Redis.from_url(REDIS)
    key = f"forkq-test-limits-{uuid.uuid4().hex[:10]}"
    yield client, key
    for name in client.scan_iter(match=f"{key}*"):
        client.delete(name)
    client.close()


def tasks(client: Forkq) -> tuple[Task, Task]:
    """The client's side of the worker's tasks: the same names."""

    @client.task(name="e2eapp.rated")
    def rated(counter_url: str, key: str) -> None:
        raise AssertionError("runs on the worker")

    @client.task(name="e2eapp.two_at_once")
    def two_at_once(counter_url: str, key: str, seconds: float, fifo: str | None = None) -> None:
        raise AssertionError("runs on the worker")

    return rated, two_at_once


def starts(counter: redis.Redis, key: str) -> list[tuple[float, int, int]]:
    """(start time, retries, delivery count) of each run, by start time."""
    runs = [entry.decode().split() for entry in counter.lrange(key, 0, -1)]
    return sorted((float(t), int(retries), int(count)) for t, retries, count in runs)


def test_a_rate_holds_across_two_workers_without_retries(
    client: Forkq, start_worker: Any, counter: tuple[redis.Redis, str]
) -> None:
    rated, _ = tasks(client)
    redis_client, key = counter
    workers = [start_worker("-c", "2") for _ in range(2)]
    for worker in workers:
        wait_until_serving(client, worker)
    results = [rated.delay(REDIS, key) for _ in range(20)]
    for result in results:
        result.get(timeout=60)
    runs = starts(redis_client, key)
    assert len(runs) == 20
    times = [t for t, _, _ in runs]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert times[-1] - times[0] >= 1.8, gaps  # 20 starts at 10/s: 1.9 s from first to last
    assert min(gaps) >= 0.05 and statistics.mean(gaps) >= 0.095, gaps  # spaced, not bunched
    assert {(retries, count) for _, retries, count in runs} == {(0, 1)}  # no retry, uncounted
    assert not client.broker.dead_letters()


def test_a_waiting_task_leaves_its_child_free(
    client: Forkq, start_worker: Any, counter: tuple[redis.Redis, str]
) -> None:
    rated, _ = tasks(client)
    redis_client, key = counter
    worker = start_worker("-c", "1")
    wait_until_serving(client, worker)
    results = [rated.delay(REDIS, key) for _ in range(20)]
    sent = time.time()
    plain = client.send_task("e2eapp.add", args=(1, 2))  # behind them, with no limit
    assert plain.get(timeout=30) == 3
    done = plain.date_done
    assert done is not None and done.timestamp() - sent < 1.5
    for result in results:
        result.get(timeout=60)
    runs = starts(redis_client, key)
    assert sum(t < done.timestamp() for t, _, _ in runs) <= 10  # most still waited then
    assert {(retries, count) for _, retries, count in runs} == {(0, 1)}


def test_concurrency_holds_across_two_workers(
    client: Forkq, start_worker: Any, counter: tuple[redis.Redis, str]
) -> None:
    _, two_at_once = tasks(client)
    redis_client, key = counter
    # --prefetch 1: a child that just ran the quick pings of wait_until_serving would fetch
    # 16 at once and run them one after the other; this test is about the slots.
    workers = [start_worker("-c", "2", "--prefetch", "1") for _ in range(2)]
    for worker in workers:
        wait_until_serving(client, worker)
    started = time.monotonic()
    results = [two_at_once.delay(REDIS, key, 0.4) for _ in range(8)]
    for result in results:
        result.get(timeout=60)
    assert time.monotonic() - started >= 8 / 2 * 0.4 - 0.05
    running = [int(n) for n in redis_client.lrange(f"{key}:running", 0, -1)]
    assert len(running) == 8 and max(running) == 2, running


def test_a_killed_child_leaks_no_slot(
    client: Forkq, start_worker: Any, e2e_dir: Path, counter: tuple[redis.Redis, str]
) -> None:
    _, two_at_once = tasks(client)
    redis_client, key = counter
    worker = start_worker("-c", "2", "--prefetch", "1")  # as above
    wait_until_serving(client, worker)
    announced = StartedSignal(e2e_dir)
    killed = two_at_once.delay(REDIS, f"{key}-killed", 0.5, announced.path)
    os.kill(announced.wait(), signal.SIGKILL)  # it holds a slot, and dies holding it
    killed.get(timeout=60)  # its redelivery took its own slot again, and ended
    results = [two_at_once.delay(REDIS, key, 0.5) for _ in range(4)]
    for result in results:
        result.get(timeout=60)
    running = [int(n) for n in redis_client.lrange(f"{key}:running", 0, -1)]
    assert max(running) == 2, running  # both slots free again
