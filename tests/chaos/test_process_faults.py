"""Chaos: processes of a real `forkq worker` die under load, on Redis and on RabbitMQ (the
machine's servers, under a prefix of the test's own): busy children killed with SIGKILL in a
loop, a whole worker (its process group: master, children, agent) killed while another
finishes its work, and a warm shutdown (SIGTERM) followed by a restart. Nothing is lost;
a task runs again only if a process that held it died."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.conftest import chaos_client, dead_count, drain, workers
from tests.chaos.harness import Run, held_by_child, held_by_worker
from tests.conftest import (
    amqp_test_url,
    engine_url,
    redis_test_url,
    wait_until_serving,
    with_param,
)

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(90)]


@pytest.fixture(params=["redis", "amqp"])
def engine(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(engine, URL): the default URL forms, under a prefix of the test's own."""
    make = {"redis": redis_test_url, "amqp": amqp_test_url}[request.param]
    for url in engine_url(request.param, make()):
        yield request.param, url


def test_children_killed_in_a_loop(engine: tuple[str, str], chaos_dir: Path) -> None:
    name, url = engine
    concurrency, kills = 4, 6
    run = Run("children-kill-loop", name, chaos_dir)
    with chaos_client(chaos_dir, url) as client, workers(chaos_dir, url) as start:
        worker = start("-c", str(concurrency), "-l", "warning")
        wait_until_serving(client, worker)
        results = run.tasks(client, 1500)
        for step in range(kills):
            results[150 + 150 * step].get(timeout=60)  # work is flowing again
            victim = worker.children()[0]
            run.fault(held_by_child(None))
            os.kill(victim, signal.SIGKILL)
            results.append(run.probe(client))
        drain(results, timeout=60)
        figures = run.figures(dead_count(client))
        figures.report()
        assert worker.proc.poll() is None, worker.log()
        figures.check()


def test_whole_workers_killed_and_another_finishes(
    engine: tuple[str, str], chaos_dir: Path
) -> None:
    """Three workers; two are killed with SIGKILL, one after the other (each its process
    group: master, children and agent at once); the third finishes their work (on Redis, once
    each dead worker's lease has run out: 2 s here, `?lease_ttl=2`, not the default 30)."""
    name, url = engine
    url = with_param(url, "lease_ttl", "2")
    concurrency = 2
    run = Run("worker-kill", name, chaos_dir)
    with chaos_client(chaos_dir, url) as client, workers(chaos_dir, url) as start:
        doomed = [start("-c", str(concurrency), "-l", "warning") for _ in range(2)]
        survivor = start("-c", str(concurrency), "-l", "warning")
        for worker in [*doomed, survivor]:
            wait_until_serving(client, worker)
        results = run.tasks(client, 1200)
        for step, worker in zip((200, 500), doomed, strict=True):
            results[step].get(timeout=60)
            run.fault(held_by_worker(concurrency, None))
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
            results.append(run.probe(client))
        drain(results, timeout=60)
        figures = run.figures(dead_count(client))
        figures.report()
        assert survivor.proc.poll() is None, survivor.log()
        figures.check()


def test_warm_shutdown_under_load_then_restart(engine: tuple[str, str], chaos_dir: Path) -> None:
    """SIGTERM: the running tasks finish, the prefetched ones go back unstarted, the worker
    exits 0; a new one runs the rest. A warm shutdown runs nothing twice: its bound is 0."""
    name, url = engine
    run = Run("sigterm-restart", name, chaos_dir)
    with chaos_client(chaos_dir, url) as client, workers(chaos_dir, url) as start:
        worker = start("-c", "2", "-l", "warning")
        wait_until_serving(client, worker)
        results = run.tasks(client, 800)
        results[150].get(timeout=60)
        run.fault(0)
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, worker.log()
        assert not all(r.ready() for r in results)  # under load: work was left
        results.append(run.probe(client))  # its recovery: the stop, then the restart
        start("-c", "2", "-l", "warning")
        drain(results, timeout=60)
        figures = run.figures(dead_count(client))
        figures.report()
        figures.check()
