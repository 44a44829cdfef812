"""A worker cut off from the network while it runs a long task, for longer than lease_ttl
(tests/hosts: two hosts in network namespaces): the other worker takes its messages over and
runs them; when the link returns, the cut-off worker finds it lost its lease before it stores
or acks anything for them, does not start the message it had prefetched, and rejoins. Nothing
is lost, the one duplicate is the task that was running at the cut, and the stored results are
the newer worker's.

The task prints where it starts and waits for a gate file of its host's name, so the test
decides when each host's run ends (the hosts share the file system)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from forkq import Forkq
from tests.conftest import E2E_APP, redis_test_url
from tests.hosts.fixture import MakeCluster

pytestmark = pytest.mark.timeout(90)

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

LEASE_TTL = 1  # seconds; set in the URL, as users set it


@pytest.fixture
def e2e_dir(tmp_path: Path) -> Path:
    (tmp_path / "e2eapp.py").write_text(E2E_APP + GATED_TASKS)
    return tmp_path


def test_a_worker_cut_off_past_its_lease_stores_nothing_for_what_was_taken_over(
    cluster: MakeCluster, e2e_dir: Path
) -> None:
    a, b = cluster(2)
    url = redis_test_url(lease_ttl=LEASE_TTL)
    client = Forkq("e2e", broker=url)
    try:
        (e2e_dir / f"go-{b.name}").touch()  # B's runs end at once; A's wait for the test
        running, prefetched = (client.send_task("e2eapp.gated", (str(e2e_dir),)) for _ in "12")
        stale = a.worker(e2e_dir, a.reach(url), "-c", "1", "--prefetch", "2")
        stale.wait_for_log(f"gated {running.id} started on {a.name}", timeout=60)
        newer = b.worker(e2e_dir, b.reach(url), "-c", "1")
        newer.wait_for_log("child 0 ready", timeout=60)

        cut = time.monotonic()
        a.partition()  # A holds both: one running, one prefetched
        assert running.get(timeout=30) == b.name
        took_over = time.monotonic() - cut
        assert prefetched.get(timeout=30) == b.name
        a.heal()

        newer.stop()  # from now on only A consumes: what runs next ran on A
        (e2e_dir / f"go-{a.name}").touch()  # A's run of `running` ends now
        after = client.send_task("e2eapp.gated", (str(e2e_dir),))
        assert after.get(timeout=30) == a.name  # A rejoined
        assert running.get(timeout=1) == b.name  # B's result stands
        assert prefetched.get(timeout=1) == b.name
        log = stale.wait_for_log(f"gated {after.id} started on {a.name}", timeout=10)
        assert log.count("lost its lease") == 2, log
        # The one duplicate: the task A was running at the cut. The prefetched one ran once.
        assert log.count(f"gated {running.id} started") == 1
        assert f"gated {prefetched.id} started" not in log, log
        assert newer.log().count(f"gated {prefetched.id} started") == 1
        print(f"partition: taken over {took_over:.2f} s after the cut (lease_ttl {LEASE_TTL} s)")
    finally:
        client.close()
