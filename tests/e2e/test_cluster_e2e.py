"""The control plane across hosts: two workers, each in a network namespace of its own
(tests/hosts), reached over the broker by `forkq inspect`/`control` run from a third host; a
revoke sent from that third host terminating a task running on another, and one sent while
no worker runs holding for a worker started later; the events two hosts' workers keep, read
from a third (twice: a monitor that restarts reads on from its last offset), and each
worker's metrics scraped over its host's veth pair."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

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


METRICS_PORT = 9808  # every port is free inside a fresh host


def start_worker(host: Host, e2e_dir: Path, broker_url: str, *args: str) -> HostProcess:
    """A worker in `host` with events and metrics on, once it has read the revoked ids and
    serves its metrics on the host's address."""
    results = results_url_for(broker_url, e2e_dir)
    worker = host.worker(
        e2e_dir, host.reach(broker_url), "-c", "1", "-l", "info", "-E",
        "--metrics-port", str(METRICS_PORT), "--metrics-host", host.address, *args,
        backend=results,
    )  # fmt: skip
    worker.wait_for_log("child 0 ready", timeout=60)
    return worker


def events_from(host: Host, e2e_dir: Path, broker_url: str, start: str) -> list[dict[str, Any]]:
    """`forkq events --json --from START --no-follow` run in `host`: what the store keeps."""
    results = results_url_for(broker_url, e2e_dir)
    backend = ["--backend", results] if results else []
    done = host.forkq(e2e_dir, "events", "-A", "e2eapp", "--broker", host.reach(broker_url),
                      *backend, "--json", "--from", start, "--no-follow")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def succeeded_counted(host: Host) -> float:
    url = f"http://{host.address}:{METRICS_PORT}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "forkq_tasks_total" and s.labels.get("state") == "succeeded"
    )


def test_a_revoke_from_a_host_while_no_worker_runs_holds_for_a_worker_started_later(
    cluster: MakeCluster, e2e_dir: Path, broker_url: str
) -> None:
    a, c = cluster(2)
    results = results_url_for(broker_url, e2e_dir)
    client = Forkq("e2e", broker=broker_url, backend=results)
    try:
        ran = e2e_dir / "ran"
        revoked = client.send_task("e2eapp.touch", (str(ran),))
        done = c.forkq(e2e_dir, "control", "revoke", revoked.id, "-A", "e2eapp",
                       "--broker", c.reach(broker_url),
                       *(["--backend", results] if results else []))  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        after = client.send_task("e2eapp.add", (2, 3))
        start_worker(a, e2e_dir, broker_url)
        assert after.get(timeout=60) == 5  # the queue was consumed past the revoked task
        with pytest.raises(TaskRevoked):
            revoked.get(timeout=10)
        assert not ran.exists()
    finally:
        client.close()


def test_events_and_metrics_of_two_hosts_read_from_a_third(
    cluster: MakeCluster, e2e_dir: Path, broker_url: str
) -> None:
    a, b, c = cluster(3)
    workers = {a.name: start_worker(a, e2e_dir, broker_url, "-n", a.name),
               b.name: start_worker(b, e2e_dir, broker_url, "-n", b.name)}  # fmt: skip
    client = Forkq("e2e", broker=broker_url, backend=results_url_for(broker_url, e2e_dir))
    try:
        sent = [client.send_task("e2eapp.add", (i, i)) for i in range(20)]
        assert [r.get(timeout=60) for r in sent] == [2 * i for i in range(20)]
        ids = {r.id for r in sent}

        def succeeded(events: list[dict[str, Any]]) -> set[str]:
            return {e["task_id"] for e in events if e.get("kind") == "succeeded"}

        first = events_from(c, e2e_dir, broker_url, "start")
        while succeeded(first) != ids:  # each child sends within 0.2 s of going idle
            first += events_from(c, e2e_dir, broker_url, first[-1]["offset"])
        online = {e["host"] for e in first if e["type"] == "worker" and e["kind"] == "online"}
        assert online == {a.name, b.name}
        assert {e["worker"] for e in first if e.get("kind") == "succeeded"} <= {
            e["worker"] for e in first if e["type"] == "worker"
        }

        # A monitor that restarts goes on from the last offset it printed: only what is new.
        last = first[-1]["offset"]
        more = client.send_task("e2eapp.add", (20, 20))
        assert more.get(timeout=60) == 40
        later: list[dict[str, Any]] = []
        while more.id not in succeeded(later):
            later += events_from(c, e2e_dir, broker_url, later[-1]["offset"] if later else last)
        assert {e["task_id"] for e in later if e["type"] == "task"} == {more.id}

        # Each worker's metrics, scraped over its host's veth pair: together, what ran.
        assert sum(succeeded_counted(h) for h in (a, b)) == 21
    finally:
        client.close()
        for worker in workers.values():
            worker.stop()
