"""A worker cut off from the network while it runs a long task, for longer than its broker
lets it keep the message (Redis: lease_ttl; RabbitMQ: the connection's heartbeat timeout),
in tests/hosts' network namespaces: the other worker takes its messages over and runs them;
the cut-off worker finds it lost them before it stores or acks anything for them, does not
start the message it had prefetched, and rejoins. Nothing is lost, the one duplicate is the
task that was running at the cut, and the stored results are the newer worker's.

The task prints where it starts and waits for a gate file named after its host, so the test
decides when each host's run ends (the hosts share the file system): after the link returns,
or while the worker is still cut off (its check then waits for the link, or times out)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forkq import Forkq
from tests.conftest import E2E_APP, amqp_test_url, engine_url, redis_test_url, results_url_for
from tests.hosts import Host
from tests.hosts.fixture import MakeCluster
from tests.hosts.process import HostProcess

pytestmark = pytest.mark.timeout(120)

GATED_TASKS = """
import socket


@app.task(bind=True)
def gated(self, directory):
    host = socket.gethostname()
    print(f"gated {self.request.id} started on {host}", flush=True)
    gate = os.path.join(directory, "go-" + host)
    while not os.path.exists(gate):
        time.sleep(0.02)
    return host
"""

# How users set how long a silent worker keeps its messages, in the broker's URL.
LEASE_TTL = 1  # Redis: seconds
HEARTBEAT = 2  # RabbitMQ: pika's heartbeat, in seconds; RabbitMQ closes after two missed


@pytest.fixture
def e2e_dir(tmp_path: Path) -> Path:
    (tmp_path / "e2eapp.py").write_text(E2E_APP + GATED_TASKS)
    return tmp_path


@pytest.fixture(params=["redis", "amqp"])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "redis":
        yield from engine_url("redis", redis_test_url(lease_ttl=LEASE_TTL))
    else:
        yield from engine_url("amqp", amqp_test_url(heartbeat=HEARTBEAT))


def worker(host: Host, e2e_dir: Path, url: str, *args: str) -> HostProcess:
    results = results_url_for(url, e2e_dir)  # RabbitMQ's: a SQLite file both hosts share
    return host.worker(e2e_dir, host.reach(url), "-c", "1", *args, backend=results)


@pytest.mark.parametrize("ends", ["after the heal", "while cut off"])
def test_a_worker_cut_off_past_its_lease_stores_nothing_for_what_was_taken_over(
    cluster: MakeCluster, e2e_dir: Path, url: str, ends: str
) -> None:
    a, b = cluster(2)
    engine = url.split(":", 1)[0]
    client = Forkq("e2e", broker=url, backend=results_url_for(url, e2e_dir))
    try:
        (e2e_dir / f"go-{b.name}").touch()  # B's runs end at once; A's wait for the test
        running, prefetched = (client.send_task("e2eapp.gated", (str(e2e_dir),)) for _ in "12")
        stale = worker(a, e2e_dir, url, "--prefetch", "2")
        stale.wait_for_log(f"gated {running.id} started on {a.name}", timeout=60)
        newer = worker(b, e2e_dir, url)
        newer.wait_for_log("child 0 ready", timeout=60)

        cut = time.monotonic()
        a.partition()  # A holds both: one running, one prefetched
        assert running.get(timeout=60) == b.name
        took_over = time.monotonic() - cut
        assert prefetched.get(timeout=30) == b.name
        if ends == "while cut off":
            (e2e_dir / f"go-{a.name}").touch()
            stale.wait_for_log(f"{running.id}] succeeded", timeout=10)
        a.heal()

        newer.stop()  # from now on only A consumes: what runs next ran on A
        (e2e_dir / f"go-{a.name}").touch()  # A's run of `running` ends now, if not yet
        after = client.send_task("e2eapp.gated", (str(e2e_dir),))
        assert after.get(timeout=60) == a.name  # A rejoined
        assert running.get(timeout=1) == b.name  # B's results stand
        assert prefetched.get(timeout=1) == b.name
        log = stale.wait_for_log(f"gated {after.id} started on {a.name}", timeout=10)
        # A's check of its hold, sent while cut off, is answered once the link returns, or
        # times out first (the client's read timeout): then the child leaves, having stored
        # and acked nothing, and its master starts another (one exit, no crash loop).
        left = "child 0 lost its connection mid-task" in log
        assert log.count("lost its lease to another worker") == (0 if left else 2), log
        assert log.count("exit code") == (1 if left else 0), log
        # The one duplicate: the task A was running at the cut. The prefetched one ran once.
        assert log.count(f"gated {running.id} started") == 1
        assert f"gated {prefetched.id} started" not in log, log
        assert newer.log().count(f"gated {prefetched.id} started") == 1
        how = "its child left and came back" if left else "it found its leases lost"
        print(
            f"\n{engine}, A's run ending {ends}: taken over {took_over:.2f} s after the cut; {how}"
        )
    finally:
        client.close()
