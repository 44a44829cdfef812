"""Chaos: a worker cut off from the network under load (tests/hosts: two network namespaces
playing two hosts), for longer than its broker keeps a silent worker's messages (Redis:
`?lease_ttl=2`; RabbitMQ: `?heartbeat=2`, the connection closed after two missed), then back.
The other worker takes over what the cut-off one held and drains the queue; once the link
returns, the cut-off worker starts nothing it had prefetched and stores nothing for what was
taken over (lease.py), then works again. Nothing is lost; what runs twice is what the cut-off
worker was running at the cut."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forkq import Forkq
from tests.chaos.conftest import chaos_client, dead_count, drain
from tests.chaos.harness import Run, held_by_worker
from tests.conftest import amqp_test_url, engine_url, redis_test_url, results_url_for
from tests.hosts import Host, HostProcess
from tests.hosts.fixture import MakeCluster

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(120)]

CONCURRENCY = 2


@pytest.fixture(params=["redis", "amqp"])
def engine(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(engine, URL): how users shorten how long a silent worker keeps its messages."""
    if request.param == "redis":
        yield from (("redis", u) for u in engine_url("redis", redis_test_url(lease_ttl=2)))
    else:
        yield from (("amqp", u) for u in engine_url("amqp", amqp_test_url(heartbeat=2)))


def start(host: Host, directory: Path, url: str) -> HostProcess:
    backend = results_url_for(url, directory)  # RabbitMQ's: a SQLite file both hosts share
    worker = host.worker(directory, host.reach(url), "-c", str(CONCURRENCY), backend=backend)
    worker.wait_for_log(f"child {CONCURRENCY - 1} ready", timeout=60)
    return worker


def rejoined(worker: HostProcess, run: Run, client: Forkq) -> None:
    """Until the cut-off worker runs tasks sent after the heal: its children settle what they
    held first (a child's call sent while cut off is answered once TCP sends it again, or
    times out), then fetch anew."""
    deadline = time.monotonic() + 60
    while True:
        batch = run.tasks(client, 20)
        drain(batch, timeout=30)
        log = worker.log()
        if any(f"[{r.id}] succeeded" in log for r in batch):
            return
        assert time.monotonic() < deadline, f"the cut-off worker ran nothing since the heal\n{log}"


def test_a_worker_cut_off_under_load_past_its_lease(
    cluster: MakeCluster, engine: tuple[str, str], chaos_dir: Path
) -> None:
    name, url = engine
    a, b = cluster(2)
    run = Run("partition", name, chaos_dir)
    with chaos_client(chaos_dir, url) as client:
        cut_off, other = start(a, chaos_dir, url), start(b, chaos_dir, url)
        results = run.tasks(client, 1000)
        results[150].get(timeout=60)  # both under load
        run.fault(held_by_worker(CONCURRENCY, None))
        a.partition()
        results.append(run.probe(client))
        drain(results, timeout=60)  # the other worker ran all, the cut-off one's included
        a.heal()
        rejoined(cut_off, run, client)
        figures = run.figures(dead_count(client), note="lease 2 s" if name == "redis" else "")
        figures.report()
        # What the cut-off worker notices depends on where the cut found it (tests/e2e/
        # test_partition_e2e.py checks that, one task at a time); here, that it kept running.
        assert other.proc.poll() is None and cut_off.proc.poll() is None, cut_off.log()
        figures.check()
