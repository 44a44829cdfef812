"""The control plane across hosts: two workers, each in a network namespace of its own
(tests/hosts), reached over the broker by `forkq inspect`/`control` run from a third host; and
a revoke sent from that third host terminating a task running on another."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forkq import Forkq, TaskRevoked
from tests.conftest import (
    amqp_test_url,
    engine_url,
    redis_test_url,
    results_url_for,
)
from tests.e2e.test_revoke_e2e import REVOKE_TASKS, Held
from tests.hosts import Host
from tests.hosts.fixture import MakeCluster
from tests.hosts.process import HostProcess

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(params=["redis", "amqp"])
def broker_url(request: pytest.FixtureRequest) -> Iterator[str]:
    urls = {"redis": redis_test_url, "amqp": amqp_test_url}
    yield from engine_url(request.param, urls[request.param]())


@pytest.fixture
def e2e_dir(tmp_path: Path) -> Path:
    from tests.conftest import E2E_APP

    (tmp_path / "e2eapp.py").write_text(E2E_APP + REVOKE_TASKS)
    return tmp_path


def worker_on(host: Host, e2e_dir: Path, broker_url: str) -> HostProcess:
    """A worker in `host`, named after it, once its control agent listens."""
    results = results_url_for(broker_url, e2e_dir)
    worker = host.worker(e2e_dir, host.reach(broker_url), "-c", "1", "-l", "info", backend=results)
    worker.wait_for_log(f"control agent of {host.name} listening", timeout=60)
    return worker


def forkq_from(host: Host, e2e_dir: Path, broker_url: str, *args: str, status: int = 0) -> Any:
    """`forkq ARGS -A e2eapp --broker URL [--backend ...] --json` run in `host`; its JSON.
    `status` 1: a call that names a missing worker."""
    results = results_url_for(broker_url, e2e_dir)
    backend = ["--backend", results] if results else []
    done = host.forkq(e2e_dir, *args, "-A", "e2eapp", "--broker", host.reach(broker_url),
                      *backend, "--json")  # fmt: skip
    assert done.returncode == status, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_inspect_and_control_from_a_third_host_reach_both_workers(
    cluster: MakeCluster, e2e_dir: Path, broker_url: str
) -> None:
    a, b, c = cluster(3)
    workers = [worker_on(a, e2e_dir, broker_url), worker_on(b, e2e_dir, broker_url)]
    pinged = forkq_from(c, e2e_dir, broker_url, "inspect", "ping", "--timeout", "10")
    assert set(pinged["replies"]) == {a.name, b.name} and pinged["missing"] == []
    assert {r["pid"] for r in pinged["replies"].values()} == {w.pid for w in workers}

    grown = forkq_from(c, e2e_dir, broker_url, "control", "pool-grow", "1", "--timeout", "10")
    assert {name: r["concurrency"] for name, r in grown["replies"].items()} == {
        a.name: 2,
        b.name: 2,
    }
    only_b = forkq_from(c, e2e_dir, broker_url, "inspect", "stats", "-d", b.name)
    assert list(only_b["replies"]) == [b.name]
    assert only_b["replies"][b.name]["concurrency"] == 2

    workers[0].stop()  # killed: its agent never withdraws, so it is expected and missing
    pinged = forkq_from(c, e2e_dir, broker_url, "inspect", "ping", "--timeout", "3", status=1)
    assert list(pinged["replies"]) == [b.name] and pinged["missing"] == [a.name]


def test_a_revoke_from_a_third_host_terminates_a_task_running_on_another(
    cluster: MakeCluster, e2e_dir: Path, broker_url: str
) -> None:
    a, b, c = cluster(3)
    worker_on(a, e2e_dir, broker_url)
    worker_on(b, e2e_dir, broker_url)
    results = results_url_for(broker_url, e2e_dir)
    client = Forkq("e2e", broker=broker_url, backend=results)
    try:
        running = Held(client, e2e_dir)
        pid = running.started.wait()
        done = c.forkq(e2e_dir, "control", "revoke", running.result.id, "--terminate",
                       "-A", "e2eapp", "--broker", c.reach(broker_url),
                       *(["--backend", results] if results else []))  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"terminated {running.result.id}: SIGTERM to child pid {pid}" in done.stdout
        with pytest.raises(TaskRevoked, match="terminated while running"):
            running.result.get(timeout=60)
        assert running.runs.read_text().splitlines() == ["started", "finally"]  # not run again
    finally:
        client.close()
