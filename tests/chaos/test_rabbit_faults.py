"""Chaos: a RabbitMQ node of the tests' own (tests/rabbit_servers.py; never the machine's
node on 5672) fails under load: its application stopped and started (`rabbitmqctl
stop_app`/`start_app`), and the whole node killed with SIGKILL and started again from its
data directory. forkq's queues are durable and its messages persistent, published with
confirms (one) or in transactions (many): nothing is lost. The node boots once for the
module (7-12 s on 2 vCPUs); each test has a queue prefix of its own."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.conftest import chaos_client, dead_count, drain, workers
from tests.chaos.harness import Run, held_by_worker
from tests.conftest import wait_until_serving
from tests.rabbit_servers import PrivateRabbit, running_rabbit

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(150)]

CONCURRENCY = 2


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbit]:
    with running_rabbit(tmp_path_factory.mktemp("chaos-rabbit")) as node:
        yield node


def test_rabbitmq_application_stopped_and_started(rabbit: PrivateRabbit, chaos_dir: Path) -> None:
    url = rabbit.url(prefix=f"chaos-{uuid.uuid4().hex[:8]}")
    run = Run("rabbitmq-stop-start-app", "amqp", chaos_dir)
    with chaos_client(chaos_dir, url) as client, workers(chaos_dir, url) as start:
        worker = start("-c", str(CONCURRENCY), "-l", "warning")
        wait_until_serving(client, worker)
        results = run.tasks(client, 1000)
        results[150].get(timeout=60)
        run.fault(held_by_worker(CONCURRENCY, None))
        rabbit.ctl("stop_app")
        rabbit.ctl("start_app")
        results.append(run.probe(client))
        drain(results, timeout=60)
        figures = run.figures(dead_count(client), note="durable queues, persistent messages")
        figures.report()
        assert worker.proc.poll() is None, worker.log()
        figures.check()


def test_rabbitmq_node_killed_and_restarted(rabbit: PrivateRabbit, chaos_dir: Path) -> None:
    """SIGKILL to the node's process group (the Erlang VM with it): it comes back from its
    data directory, with every message it had confirmed, nothing lost. What it had been told
    was acked but had not written comes back too (every task that ran in the 0.4 s before the
    kill, ~145 of 1,000), redelivered: their results are stored by runs of the same sending,
    so they are acked without running again (forkq/worker/redelivered.py), and the duplicates
    stay within the in-flight bound."""
    url = rabbit.url(prefix=f"chaos-{uuid.uuid4().hex[:8]}")
    run = Run("rabbitmq-kill-9", "amqp", chaos_dir)
    with chaos_client(chaos_dir, url) as client, workers(chaos_dir, url) as start:
        worker = start("-c", str(CONCURRENCY), "-l", "warning")
        wait_until_serving(client, worker)
        results = run.tasks(client, 1000)
        results[150].get(timeout=60)
        assert rabbit.proc is not None
        run.fault(held_by_worker(CONCURRENCY, None))
        os.killpg(rabbit.proc.pid, signal.SIGKILL)  # the group its start() made
        rabbit.proc.wait(timeout=10)
        rabbit.start()
        results.append(run.probe(client, timeout=60))
        drain(results, timeout=90)
        figures = run.figures(dead_count(client), note="a restart from its data directory")
        figures.report()
        assert worker.proc.poll() is None, worker.log()
        figures.check()
