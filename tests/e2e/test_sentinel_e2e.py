"""A worker and its clients on `redis+sentinel://` ride out a failover: the primary is killed
(SIGKILL) mid-run, the Sentinels promote the replica, and every task published before the
kill (with `wait_replicas=1`: on the replica when acknowledged) or after it runs, with no
duplicates beyond what was in flight."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from forkq import AsyncResult, Forkq
from forkq.envelope import make_message
from forkq.exceptions import BrokerUnavailable
from tests.conftest import REDIS, WorkerProcess, wait_until_serving
from tests.redis_sentinel import SentinelGroup

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def _counted(client: Forkq, key: str, count: int) -> list[Any]:
    queue = client.settings.default_queue
    return [
        make_message("e2eapp.counted", [REDIS, 0.01], {"key": key}, queue=queue)
        for _ in range(count)
    ]


def _publish_until_it_goes(client: Forkq, messages: list[Any], timeout: float) -> list[Any]:
    """Publish, again and again while the broker is unreachable (no primary yet: nothing
    of a refused publish was written)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.publish_many(messages)
        except BrokerUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # an outage sends no signal of its end


def test_a_worker_and_its_clients_follow_a_failover(
    sentinel_group: SentinelGroup, e2e_dir: Path
) -> None:
    url = sentinel_group.url(query="lease_ttl=5")
    key = f"forkq-test-sentinel-{uuid.uuid4().hex[:10]}"
    counter = redis.Redis.from_url(REDIS)
    waited = Forkq("e2e", broker=url + "&wait_replicas=1")
    client = Forkq("e2e", broker=url)
    worker = WorkerProcess(e2e_dir, url, "-c", "2", "-l", "info")
    try:
        wait_until_serving(client, worker)
        before: list[AsyncResult[Any]] = waited.publish_many(_counted(waited, key, 300))
        before[60].get(timeout=30)
        sentinel_group.kill_primary()
        killed, ran_before = time.monotonic(), counter.hlen(key)
        after = _publish_until_it_goes(client, _counted(client, key, 100), timeout=30)
        published = time.monotonic() - killed
        done = [r.get(timeout=60) for r in before + after]  # the clients' get() follow too
        finished = time.monotonic() - killed
        assert done == [r.id for r in before + after]
        runs = {k.decode(): int(n) for k, n in counter.hgetall(key).items()}
        assert set(runs) == set(done)  # every one ran: none lost in the failover
        duplicates = sum(n - 1 for n in runs.values())
        print(
            f"\n400 tasks, the primary killed when {ran_before} had started: a "
            f"publish went through {published:.2f} s after the kill, all done after "
            f"{finished:.2f} s; {duplicates} ran twice"
        )
        # What can run twice: what the children held at the kill (a task of 10 ms: a batch
        # of 2 each, one of them running) and what finished in the moment before it whose
        # acks the replica had not received yet.
        assert duplicates <= 8, worker.log()
        assert worker.proc.poll() is None, worker.log()
        pings = client.control.inspect("ping", timeout=10)  # its agent's pub/sub followed too
        assert len(pings.replies) == 1 and pings.complete, worker.log()
    finally:
        worker.stop()
        waited.close()
        client.close()
        counter.delete(key)
        counter.close()
