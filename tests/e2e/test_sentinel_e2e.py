"""A worker and its clients on `redis+sentinel://` ride out a failover: the primary is killed
(SIGKILL) mid-run, the Sentinels promote the replica, and every task published before the
kill (with `wait_replicas=1`: on the replica when acknowledged) or after it runs, with no
duplicates beyond what was in flight."""

from __future__ import annotations

import os
import sys
import textwrap
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
from tests.processes import CollectedProcess
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


PUBLISHER = textwrap.dedent(
    """
    import sys, time
    from forkq import Forkq
    from forkq.envelope import make_message
    from forkq.exceptions import BrokerUnavailable, NotReplicated

    url, counter, key, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    app = Forkq("e2e", broker=url)
    queue = app.settings.default_queue
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        m = make_message("e2eapp.counted_quietly", [counter, 0.0], {"key": key}, queue=queue)
        try:
            app.publish(m)
            print("ok", m.id, flush=True)
        except NotReplicated:
            print("unreplicated", m.id, flush=True)
        except BrokerUnavailable:
            print("failed", m.id, flush=True)
        time.sleep(0.005)
    print("done", flush=True)
    """
)


def test_every_publish_acknowledged_across_the_failover_runs(
    sentinel_group: SentinelGroup, e2e_dir: Path
) -> None:
    """A publisher (wait_replicas=1) sends one message every 5 ms while the primary is
    killed: each publish it was told went through (before the kill: on the replica too;
    after the failover, NotReplicated, as no replica is left, but queued) runs."""
    url = sentinel_group.url(query="lease_ttl=5")
    key = f"forkq-test-sentinel-{uuid.uuid4().hex[:10]}"
    counter = redis.Redis.from_url(REDIS)
    (e2e_dir / "publisher.py").write_text(PUBLISHER)
    worker = WorkerProcess(e2e_dir, url, "-c", "2", "-l", "warning")
    client = Forkq("e2e", broker=url)
    argv = [sys.executable, "publisher.py", url + "&wait_replicas=1", REDIS, key, "6"]
    publisher: CollectedProcess | None = None
    try:
        wait_until_serving(client, worker)
        publisher = CollectedProcess(argv, e2e_dir, {**os.environ})
        publisher.wait_for_log("ok ", count=100)
        sentinel_group.kill_primary()
        publisher.wait_for_log("unreplicated ", timeout=30)  # published after the failover
        told = _told(publisher.wait_for_log("done", timeout=30))
        must_run = told["ok"] | told["unreplicated"]
        ran = _await_runs(counter, key, must_run, timeout=60)
        runs = {k.decode(): int(n) for k, n in counter.hgetall(key).items()}
        duplicates = sum(n - 1 for n in runs.values())
        print(
            f"\npublished and acknowledged: {len(told['ok'])} with WAIT, "
            f"{len(told['unreplicated'])} after the failover (no replica); "
            f"{len(told['failed'])} refused during it, of which {len(told['failed'] & ran)} "
            f"ran; {duplicates} ran twice"
        )
        assert must_run <= ran  # none lost
        assert duplicates <= 4, worker.log()  # 2 children, each a batch of 1-2 tasks held
    finally:
        if publisher is not None:
            publisher.stop()
        worker.stop()
        client.close()
        counter.delete(key, f"{key}:done")
        counter.close()


def _told(log: str) -> dict[str, set[str]]:
    """The message ids the publisher printed, by what it was told."""
    told: dict[str, set[str]] = {"ok": set(), "unreplicated": set(), "failed": set()}
    for line in log.splitlines():
        word, _, task_id = line.partition(" ")
        if word in told:
            told[word].add(task_id)
    return told


def _await_runs(counter: redis.Redis, key: str, wanted: set[str], timeout: float) -> set[str]:
    """The ids of the tasks finished, once they include every one of `wanted`."""
    deadline, seen = time.monotonic() + timeout, set[str]()
    while not wanted <= seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{len(wanted - seen)} of {len(wanted)} never ran"
        popped = counter.blpop([f"{key}:done"], timeout=max(0.1, min(remaining, 5)))
        if popped is not None:
            seen.add(popped[1].decode())
    while (more := counter.lpop(f"{key}:done")) is not None:  # any that finished meanwhile
        seen.add(more.decode())
    return seen
