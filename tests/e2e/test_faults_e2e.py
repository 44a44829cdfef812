"""Faults of one link, in tests/hosts' network namespaces, with the URLs users write.

A worker whose result backend (a private redis-server, apart from the broker) goes silent while
it runs tasks keeps each finished task's outcome and retries the store: it acks nothing it
could not store, and once the link returns every result is stored and every message acked, each
task having run once; for longer than lease_ttl too (the worker's beats still reach the broker,
so no other worker takes its messages).

A plain redis:// URL through 500 ms each way and 5 % loss slows a worker down (about two round
trips a task on one child) with no false outage and no false takeover; with a lease_ttl the
link is too slow for (heartbeats landing over half of it apart), the worker warns, naming the
fix.

A worker whose wall clock is a minute off (tests/skewed_clock) runs a countdown when it is
due by the broker's clock, and takes no live worker's messages for a dead worker's.

The tasks print where they run and with which delivery count, so the test counts the runs in
the workers' output.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from forkq import Forkq
from tests.conftest import E2E_APP, engine_url, redis_test_url
from tests.hosts import Direction, Host
from tests.hosts.fixture import MakeCluster
from tests.hosts.process import HostProcess
from tests.redis_servers import PrivateRedis

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]  # seconds each: faults last

FAULT_TASKS = """
import socket


@app.task(bind=True)
def step(self, seconds):
    host = socket.gethostname()
    print(f"step {self.request.id} run {self.request.delivery_count} on {host}", flush=True)
    time.sleep(seconds)
    return self.request.delivery_count


@app.task(bind=True)
def gated(self, directory):
    print(f"gated {self.request.id} started on {socket.gethostname()}", flush=True)
    while not os.path.exists(os.path.join(directory, "go")):
        time.sleep(0.02)
    return self.request.delivery_count


@app.task(bind=True)
def retry_once(self, countdown):
    print(f"retry_once {self.request.id} try {self.request.retries}", flush=True)
    if self.request.retries == 0:
        raise self.retry(countdown=countdown)
    return self.request.retries
"""

LEASE_TTL = 1  # seconds, in the broker's URL, as users set it


@pytest.fixture
def e2e_dir(tmp_path: Path) -> Path:
    (tmp_path / "e2eapp.py").write_text(E2E_APP + FAULT_TASKS)
    return tmp_path


@pytest.fixture(params=["lease_ttl default", f"lease_ttl={LEASE_TTL}"])
def broker_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The shared Redis, with the default lease_ttl (30 s) or a short one."""
    params = {} if request.param == "lease_ttl default" else {"lease_ttl": LEASE_TTL}
    yield from engine_url("redis", redis_test_url(**params))


def runs(workers: list[HostProcess], task_id: str) -> int:
    return sum(w.log().count(f"step {task_id} run ") for w in workers)


def backend_worker(host: Host, e2e_dir: Path, broker: str, backend: PrivateRedis) -> HostProcess:
    host.forward(backend.port)
    worker = host.worker(e2e_dir, host.reach(broker), "-c", "2", backend=host.reach(backend.url))
    worker.wait_for_log("child 1 ready", timeout=60)
    return worker


# Past the read timeout of a URL that names none (redis-py's 5 s): the stores fail, not only
# wait; and past the short lease_ttl.
CUT_FOR = 6.5


def test_a_worker_cut_off_from_its_result_backend_stores_then_acks_once_it_returns(
    cluster: MakeCluster, e2e_dir: Path, broker_url: str, private_redis: PrivateRedis
) -> None:
    a, b = cluster(2)
    client = Forkq("e2e", broker=broker_url, backend=private_redis.url)
    try:
        cut_off = backend_worker(a, e2e_dir, broker_url, private_redis)
        sent = [client.send_task("e2eapp.step", (0.5,)) for _ in range(6)]
        for result in sent[:2]:
            cut_off.wait_for_log(f"step {result.id} run ", timeout=30)
        a.link(private_redis.port).blackhole(Direction.BOTH)
        a.link(private_redis.port).cut()  # what it had open resets; new ones hang
        # A second worker, reaching the backend, consumes the same queue: it may take only what
        # A's beats stop covering (nothing, since they still reach the broker).
        other = backend_worker(b, e2e_dir, broker_url, private_redis)
        time.sleep(CUT_FOR)  # the fault's length is the test's subject: no event to wait on
        healed = time.monotonic()
        a.heal()
        got = {r.id: r.get(timeout=60) for r in sent}
        stored = time.monotonic() - healed
        wait_until_acked(broker_url)
        acked = time.monotonic() - healed
        workers = [cut_off, other]
        counts = {r.id: runs(workers, r.id) for r in sent}
        assert all(n >= 1 for n in counts.values()), counts
        duplicates = sum(counts.values()) - len(sent)
        assert duplicates == 0, (counts, "\n" + cut_off.log())
        assert set(got.values()) == {1}, got  # every task's first delivery is the one stored
        assert "lost its connection" not in cut_off.log()
        lease = "lease_ttl=1" if "lease_ttl" in broker_url else "lease_ttl default"
        print(
            f"\nbackend cut {CUT_FOR} s ({lease}): all {len(sent)} stored {stored:.2f} s, "
            f"acked {acked:.2f} s after the heal"
        )
    finally:
        client.close()


def pending(broker_url: str) -> int:
    """How many entries the streams of the test's prefix hold unacked."""
    prefix = broker_url.split("prefix=", 1)[1].split("&", 1)[0]
    r = redis.Redis.from_url(broker_url.split("?", 1)[0])
    try:
        keys = r.scan_iter(match=f"{{{prefix}:*", _type="stream")
        return sum(g["pending"] for key in keys for g in r.xinfo_groups(key))
    finally:
        r.close()


def wait_until_acked(broker_url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while (left := pending(broker_url)) and time.monotonic() < deadline:
        time.sleep(0.05)  # the acks are the workers' own: polled, the only sign of them
    assert left == 0, f"{left} entries still unacked"


# Longer than the read timeout of a URL that names none (redis-py's 5 s): an idle worker's
# blocking fetch, asked to wait up to just under it, comes back over the slow link at least once.
IDLE_FOR = 6.0
BURST = 3


SLOW_MS = 500  # each way


def test_a_slow_lossy_link_to_redis_slows_a_worker_without_a_false_outage_or_takeover(
    cluster: MakeCluster, e2e_dir: Path
) -> None:
    """A plain redis:// URL (no socket_timeout: redis-py's 5 s read timeout; lease_ttl the
    default 30 s) through a link with `delay_ms` each way and 5 % loss. The slow
    worker runs a long task and a burst of short ones; then a healthy worker joins, looking
    for dead workers' messages (every lease_ttl / 4), while the slow one stays idle a while,
    its long task still running. Every task runs once, at its first delivery (nothing was
    released by the healthy worker's recovery, nor given back by a child that left), and the
    slow worker never takes the link for down."""
    delay_ms = SLOW_MS
    for url in engine_url("redis", redis_test_url()):
        slow, healthy = cluster(2)
        client = Forkq("e2e", broker=url)
        try:
            workers = [slow.worker(e2e_dir, slow.reach(url), "-c", "2")]
            workers[0].wait_for_log("child 1 ready", timeout=60)
            workers[0].wait_for_log("control agent of host0 listening", timeout=60)
            slow.redis.delay(delay_ms)  # on the connections open and those opened later
            slow.redis.loss(0.05)
            long = client.send_task("e2eapp.gated", (str(e2e_dir),))
            workers[0].wait_for_log(f"gated {long.id} started", timeout=30)
            began = time.monotonic()
            sent = [client.send_task("e2eapp.step", (0.0,)) for _ in range(BURST)]
            got = {r.id: r.get(timeout=60) for r in sent}
            took = time.monotonic() - began
            workers.append(healthy.worker(e2e_dir, healthy.reach(url), "-c", "1"))
            workers[1].wait_for_log("child 0 ready", timeout=60)
            time.sleep(IDLE_FOR)  # the fault's length is the subject: blocking fetches, beats
            (e2e_dir / "go").touch()
            assert long.get(timeout=30) == 1
            assert set(got.values()) == {1}, got  # no redelivery
            counts = {r.id: runs(workers, r.id) for r in sent}
            assert set(counts.values()) == {1}, counts
            log = workers[0].log()
            assert log.count(f"gated {long.id} started") == 1, log
            assert f"gated {long.id}" not in workers[1].log()
            for false_alarm in ("unreachable", "lost its connection", "lost its lease"):
                assert false_alarm not in log, log
            shown = f"{delay_ms} ms each way, 5 % loss: {BURST} tasks in {took:.2f} s"
            print(f"\n{shown} ({BURST / took:.1f}/s on one child)")
        finally:
            client.close()


def test_a_worker_whose_beats_land_further_apart_than_its_lease_allows_says_so(
    cluster: MakeCluster, e2e_dir: Path
) -> None:
    """lease_ttl 1 s through 500 ms each way: every beat arrives, but a tick's round trips
    (the beat, the revoked ids) put them over a second apart, so the worker's key lapses
    between them and another worker may run its messages again (seen: a long task delivered
    twice). The server cannot tell that from a dead worker: the worker warns, naming the fix."""
    for url in engine_url("redis", redis_test_url(lease_ttl=LEASE_TTL)):
        (slow,) = cluster(1)
        worker = slow.worker(e2e_dir, slow.reach(url), "-c", "1")
        worker.wait_for_log("child 0 ready", timeout=60)
        slow.redis.delay(SLOW_MS)
        slow.redis.loss(0.05)
        log = worker.wait_for_log("heartbeats", timeout=60)
        assert f"lease_ttl {LEASE_TTL} s" in log and "Raise lease_ttl" in log, log


SKEWED_CLOCK = Path(__file__).parent.parent / "skewed_clock"  # its sitecustomize.py


def skewed(seconds: float) -> dict[str, str]:
    """The environment of a host's processes whose wall clock is `seconds` off."""
    path = os.pathsep.join(p for p in (str(SKEWED_CLOCK), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, "SKEWED_CLOCK_SECONDS": str(seconds)}


COUNTDOWN = 2.0  # seconds


@pytest.mark.parametrize("skew", [60, -60])
def test_a_worker_with_a_skewed_clock_runs_countdowns_on_time_and_takes_over_no_live_lease(
    cluster: MakeCluster, e2e_dir: Path, skew: int
) -> None:
    """A worker `skew` seconds off runs a countdown sent by a client with a right clock when
    it is due, not `skew` early or late; and while a worker with a right clock runs a task
    longer than lease_ttl, the skewed one, looking for dead workers' messages every lease_ttl / 4,
    does not take it."""
    for url in engine_url("redis", redis_test_url(lease_ttl=LEASE_TTL)):
        right, off = cluster(2)
        client = Forkq("e2e", broker=url)
        try:
            steady = right.worker(e2e_dir, right.reach(url), "-c", "1")
            steady.wait_for_log("child 0 ready", timeout=60)
            long = client.send_task("e2eapp.gated", (str(e2e_dir),))  # until "go"
            steady.wait_for_log(f"gated {long.id} started on {right.name}", timeout=30)
            wrong = off.worker(e2e_dir, off.reach(url), "-c", "1", env=skewed(skew))
            wrong.wait_for_log("child 0 ready", timeout=60)
            sent = time.monotonic()
            later = client.send_task("e2eapp.step", (0.0,), countdown=COUNTDOWN)
            wrong.wait_for_log(f"step {later.id} run 1 on {off.name}", timeout=COUNTDOWN + 10)
            waited = time.monotonic() - sent
            (e2e_dir / "go").touch()  # held past lease_ttl several times over by now
            assert long.get(timeout=30) == 1 and later.get(timeout=10) == 1
            assert f"gated {long.id}" not in wrong.log(), wrong.log()
            # The fetch's own pace: a worker looks again when the message is due by the
            # server's clock, after one round trip.
            assert COUNTDOWN - 0.1 <= waited <= COUNTDOWN + 1.0, waited

            # A retry's countdown, published by the skewed worker itself, the only one left.
            steady.stop()
            retried = client.send_task("e2eapp.retry_once", (COUNTDOWN,))
            wrong.wait_for_log(f"retry_once {retried.id} try 0", timeout=10)
            first = time.monotonic()
            wrong.wait_for_log(f"retry_once {retried.id} try 1", timeout=COUNTDOWN + 10)
            again = time.monotonic() - first
            assert retried.get(timeout=10) == 1
            assert COUNTDOWN - 0.1 <= again <= COUNTDOWN + 1.0, again

            # A countdown sent by a client on the skewed host.
            code = (
                "from forkq import Forkq\n"
                f"app = Forkq('e2e', broker={off.reach(url)!r})\n"
                f"print(app.send_task('e2eapp.step', (0.0,), countdown={COUNTDOWN}).id)"
            )
            began = time.monotonic()
            sent_by = off.python(code, env=skewed(skew))
            sending = time.monotonic() - began  # the countdown runs from a moment in it
            assert sent_by.returncode == 0, sent_by.stderr
            wrong.wait_for_log(f"step {sent_by.stdout.strip()} run 1", timeout=COUNTDOWN + 10)
            theirs = time.monotonic() - began
            assert COUNTDOWN - 0.1 <= theirs <= COUNTDOWN + sending + 1.0, (theirs, sending)
            print(
                f"\nclock {skew:+d} s: a {COUNTDOWN} s countdown ran after {waited:.2f} s, "
                f"a retry's after {again:.2f} s, a skewed client's within {theirs:.2f} s"
            )
        finally:
            client.close()
