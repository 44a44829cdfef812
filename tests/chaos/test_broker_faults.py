"""Chaos: the broker dies under load and comes back, on servers of the test's own (never the
machine's shared Redis or RabbitMQ): a private redis-server killed with SIGKILL and
restarted, with its append-only file (`appendfsync always`: nothing lost) and without one
(the documented loss: what was queued and not yet delivered is gone, with the results
stored; what the children held still runs); a Redis Sentinel group's primary killed and its
replica promoted; a Redis Cluster's primary killed and its replica promoted. RabbitMQ's:
test_rabbit_faults.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from forkq.engines.redis.keys import QueueKeys
from tests.chaos.conftest import chaos_client, dead_count, drain, workers
from tests.chaos.harness import Run, held_by_worker
from tests.conftest import wait_until_serving
from tests.redis_cluster import PrivateCluster
from tests.redis_sentinel import SentinelGroup
from tests.redis_servers import PrivateRedis, need_programs, running

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(120)]

CONCURRENCY = 2


def test_redis_killed_and_restarted_with_its_append_only_file(chaos_dir: Path) -> None:
    need_programs("redis-server")
    (chaos_dir / "redis").mkdir()
    run = Run("redis-kill-aof", "redis", chaos_dir)
    with (
        running(PrivateRedis(chaos_dir / "redis")) as server,
        chaos_client(chaos_dir, server.url) as client,
        workers(chaos_dir, server.url) as start,
    ):
        worker = start("-c", str(CONCURRENCY), "-l", "warning")
        wait_until_serving(client, worker)
        results = run.tasks(client, 1000)
        results[150].get(timeout=60)
        run.fault(held_by_worker(CONCURRENCY, None))
        server.kill()
        server.start()
        results.append(run.probe(client))
        drain(results, timeout=60)
        figures = run.figures(dead_count(client), note="appendonly yes, appendfsync always")
        figures.report()
        assert worker.proc.poll() is None, worker.log()
        figures.check()


def test_redis_killed_and_restarted_without_persistence(chaos_dir: Path) -> None:
    """The loss forkq documents: a Redis that keeps nothing on disk comes back empty. What
    was queued is gone (none of it had started); everything that had started completes, and
    every task sent after the restart runs."""
    need_programs("redis-server")
    (chaos_dir / "redis").mkdir()
    run = Run("redis-kill-no-persistence", "redis", chaos_dir)
    unpersisted = PrivateRedis(chaos_dir / "redis", extra=("--appendonly", "no"))
    with (
        running(unpersisted) as server,
        chaos_client(chaos_dir, server.url) as client,
        workers(chaos_dir, server.url) as start,
    ):
        worker = start("-c", str(CONCURRENCY), "-l", "warning")
        wait_until_serving(client, worker)
        before = run.tasks(client, 1000)
        before[150].get(timeout=60)
        run.fault(held_by_worker(CONCURRENCY, None))
        server.kill()
        server.start()
        after = [run.probe(client), *run.tasks(client, 200)]
        drain(after, timeout=60)  # a child runs its batch before it fetches the next
        figures = run.figures(dead_count(client), note="appendonly no: queued messages lost")
        figures.report()
        assert worker.proc.poll() is None, worker.log()
        assert figures.lost > 0  # under load: a backlog was queued at the kill
        assert not figures.lost_ids & figures.started  # only what was queued, never run
        assert not figures.lost_ids & {r.id for r in after}
        assert figures.duplicates <= figures.bound, figures.line()


def test_sentinel_failover(sentinel_group: SentinelGroup, chaos_dir: Path) -> None:
    """The primary killed with SIGKILL; the Sentinels promote the replica (down after 1 s).
    What can run again: what the children held, and what finished in the moment before the
    kill whose acks the replica had not yet received (asynchronous replication)."""
    url = sentinel_group.url()
    run = Run("sentinel-failover", "redis+sentinel", chaos_dir)
    with chaos_client(chaos_dir, url) as client, workers(chaos_dir, url) as start:
        worker = start("-c", str(CONCURRENCY), "-l", "warning")
        wait_until_serving(client, worker)
        results = run.tasks(client, 1000)
        results[150].get(timeout=60)
        run.fault(held_by_worker(CONCURRENCY, None))
        sentinel_group.kill_primary()
        results.append(run.probe(client))
        drain(results, timeout=60)
        figures = run.figures(dead_count(client), note="down-after 1 s")
        figures.report()
        assert worker.proc.poll() is None, worker.log()
        figures.check()


def test_cluster_primary_killed_and_its_replica_promoted(
    redis_cluster: PrivateCluster, chaos_dir: Path
) -> None:
    """A Redis Cluster of three primaries with a replica each; the primary serving the
    queue's slot killed with SIGKILL, its replica promoted by the cluster (a node is down
    after 1 s). The URL names one node, as a user's might. What can run again: what the
    children held, and what finished just before the kill whose acks the replica had not
    received yet (asynchronous replication)."""
    url = f"redis+cluster://127.0.0.1:{redis_cluster.nodes[0].port}"
    run = Run("cluster-failover", "redis+cluster", chaos_dir)
    with chaos_client(chaos_dir, url) as client, workers(chaos_dir, url) as start:
        worker = start("-c", str(CONCURRENCY), "-l", "warning")
        wait_until_serving(client, worker)
        results = run.tasks(client, 1000)
        results[150].get(timeout=60)
        queue = QueueKeys("forkq", client.settings.default_queue)
        primary = redis_cluster.primary_of(queue.band(0))
        run.fault(held_by_worker(CONCURRENCY, None))
        primary.kill()
        results.append(run.probe(client))
        drain(results, timeout=60)
        figures = run.figures(dead_count(client), note="cluster-node-timeout 1 s")
        figures.report()
        assert worker.proc.poll() is None, worker.log()
        assert "Traceback" not in worker.log()  # an outage, said in a line, not a crash
        figures.check()
