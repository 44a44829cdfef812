"""Hosts in network namespaces (root): each reaches the shared Redis and RabbitMQ through its
own link and nothing else, runs a forkq worker that serves tasks sent from the root namespace,
is cut off by a partition and back on heal, and leaves nothing behind however its run ends."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from forkq import Forkq
from tests.conftest import (
    amqp_reachable,
    amqp_test_url,
    engine_url,
    redis_reachable,
    redis_test_url,
    results_url_for,
    wait_until_serving,
)
from tests.hosts import Cluster, Direction, Host, netns
from tests.hosts.fixture import MakeCluster, require_hosts

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).parents[2]

REACH = textwrap.dedent(
    """
    import socket, sys
    import pika, redis

    print("redis", redis.Redis.from_url(sys.argv[1], socket_timeout=5).ping())
    amqp = pika.BlockingConnection(pika.URLParameters(sys.argv[2]))
    print("amqp", amqp.is_open)
    amqp.close()
    print("name", socket.gethostname())
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=2)
        print("loopback reaches redis")
    except OSError as error:
        print("loopback", type(error).__name__)
    """
)

# One connection kept open; each line on stdin is a PING over it (reconnecting after a
# failure), answered on stdout with PONG or the error's name.
PINGER = textwrap.dedent(
    """
    import socket, sys

    address, sock = (sys.argv[1], int(sys.argv[2])), None
    for _ in sys.stdin:
        try:
            sock = sock or socket.create_connection(address, timeout=1)
            sock.sendall(b"PING\\r\\n")
            print("PONG" if sock.recv(100) == b"+PONG\\r\\n" else "WRONG", flush=True)
        except OSError as error:
            print("FAILED", type(error).__name__, flush=True)
            sock = None
    """
)

ROUND_TRIP = textwrap.dedent(
    """
    import socket, sys, time

    sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
    times = []
    for _ in range(3):
        start = time.monotonic()
        sock.sendall(b"PING\\r\\n")
        assert sock.recv(100) == b"+PONG\\r\\n"
        times.append(time.monotonic() - start)
    print(min(times))
    """
)


@pytest.fixture
def servers() -> None:
    """Redis and RabbitMQ up (else skipped; with CI=true, failed)."""
    for name, reachable in (("Redis", redis_reachable), ("RabbitMQ", amqp_reachable)):
        if not reachable():
            if os.environ.get("CI") == "true":
                pytest.fail(f"{name} is not reachable (CI=true: no skipping)")
            pytest.skip(f"{name} is not reachable (scripts/ensure-services starts it)")


def python(host: Host, code: str, *args: object) -> subprocess.CompletedProcess[str]:
    done = host.run([sys.executable, "-c", code, *map(str, args)])
    assert done.returncode == 0, done.stderr
    return done


def test_each_host_reaches_the_servers_through_its_own_link(
    cluster: MakeCluster, servers: None
) -> None:
    a, b = cluster(2)
    running = {
        host: host.spawn([sys.executable, "-c", REACH, host.redis_url(15), host.amqp_url()])
        for host in (a, b)
    }  # both at once
    for host, process in running.items():
        assert process.wait(timeout=30) == 0, process.log()
        assert process.log().splitlines() == [
            "redis True",
            "amqp True",
            f"name {host.name}",
            "loopback ConnectionRefusedError",
        ]
        assert (host.redis.accepted, host.amqp.accepted) == (1, 1)
    assert a.address != b.address
    assert netns.netns_inode(a.namespace) != netns.netns_inode(b.namespace)


def test_the_root_namespace_reaches_a_server_a_host_runs(
    cluster: MakeCluster, tmp_path: Path
) -> None:
    a, b = cluster(2)
    (tmp_path / "hello").write_text("from a host")
    for host in (a, b):  # the same port on each: every port is free in a fresh host
        argv = [sys.executable, "-m", "http.server", "8000", "--bind", host.address]
        host.spawn([*argv, "--directory", str(tmp_path)]).wait_for_log("Serving HTTP")
        with urllib.request.urlopen(f"http://{host.address}:8000/hello", timeout=5) as page:
            assert page.read() == b"from a host"


def test_reach_rewrites_a_url_to_the_host_s_link(cluster: MakeCluster) -> None:
    (a,) = cluster(1)
    redis_at, amqp_at = f"{a.gateway}:{a.redis.port}", f"{a.gateway}:{a.amqp.port}"
    assert a.reach("redis://127.0.0.1:6379/15?prefix=p") == f"redis://{redis_at}/15?prefix=p"
    assert a.reach("redis://localhost/3") == f"redis://{redis_at}/3"
    assert (
        a.reach("amqp://guest:guest@127.0.0.1/%2F?x=1") == f"amqp://guest:guest@{amqp_at}/%2F?x=1"
    )
    assert a.redis_url(2, prefix="p") == f"redis://{redis_at}/2?prefix=p"
    with pytest.raises(ValueError, match=r"no link to 127.0.0.1:6380; Host.forward\(6380\)"):
        a.reach("redis://127.0.0.1:6380/0")
    extra = a.forward(6380)
    assert a.reach("redis://127.0.0.1:6380/0") == f"redis://{a.gateway}:{extra.port}/0"


@pytest.mark.slow
def test_a_partition_times_out_the_host_and_heal_restores_it(
    cluster: MakeCluster, servers: None
) -> None:
    a, b = cluster(2)
    pinger = a.spawn([sys.executable, "-c", PINGER, a.gateway, str(a.redis.port)], stdin=True)
    pinger.write("ping")
    pinger.wait_for_log("PONG", timeout=10)
    a.partition()
    pinger.write("ping")  # on the open connection: the request goes nowhere, no reset comes
    pinger.wait_for_log("FAILED TimeoutError", timeout=10)
    pinger.write("ping")  # a new connection: its SYN goes nowhere either
    pinger.wait_for_log("FAILED TimeoutError", timeout=10, count=2)
    assert float(python(b, ROUND_TRIP, b.gateway, b.redis.port).stdout) < 0.1  # b unaffected
    with pytest.raises(TimeoutError):  # from the root to the host: silence too
        socket.create_connection((a.address, 9), timeout=0.5)
    a.heal()
    pinger.write("ping")
    log = pinger.wait_for_log("PONG", timeout=10, count=2)
    assert "ConnectionRefused" not in log and "Unreachable" not in log, log
    with pytest.raises(ConnectionRefusedError):  # connected: port 9 answers with a reset
        socket.create_connection((a.address, 9), timeout=5)


def test_one_host_s_link_is_slowed_the_other_s_not(cluster: MakeCluster, servers: None) -> None:
    a, b = cluster(2)
    a.redis.delay(100, Direction.DOWN)
    slow = float(python(a, ROUND_TRIP, a.gateway, a.redis.port).stdout)
    fast = float(python(b, ROUND_TRIP, b.gateway, b.redis.port).stdout)
    assert 0.1 <= slow < 0.2
    assert fast < 0.05


@pytest.fixture(params=["redis", "amqp"])
def broker_url(request: pytest.FixtureRequest) -> Iterator[str]:
    urls = {"redis": redis_test_url, "amqp": amqp_test_url}
    yield from engine_url(request.param, urls[request.param]())


def test_a_worker_in_a_host_runs_tasks_sent_from_the_root_and_another_host(
    cluster: MakeCluster, e2e_dir: Path, broker_url: str
) -> None:
    a, b = cluster(2)
    results = results_url_for(broker_url, e2e_dir)  # RabbitMQ's: a SQLite file all reach
    worker = a.worker(e2e_dir, a.reach(broker_url), "-c", "1", backend=results)
    client = Forkq("e2e", broker=broker_url, backend=results)
    try:
        wait_until_serving(client, worker)  # type: ignore[arg-type]  # a HostProcess will do
        where = client.send_task("e2eapp.where").get(timeout=30)
    finally:
        client.close()
    child = os.readlink(f"/proc/{where['pid']}/ns/net")
    assert child == f"net:[{netns.netns_inode(a.namespace)}]"
    assert f"forkq worker {a.name} " in worker.log()  # the host's name, as its own
    assert (a.directory / "control" / f"{worker.pid}.sock").exists()  # the host's own dir
    link = a.redis if broker_url.startswith("redis") else a.amqp
    assert link.accepted >= 1

    backend = ["--backend", results] if results else []
    sent = b.forkq(e2e_dir, "call", "e2eapp.add", "2", "3", "--wait", "-A", "e2eapp",
                   "--broker", b.reach(broker_url), *backend)  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.strip().splitlines()[-1] == "5"


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def gone(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rpartition(")")[2].split()[0] == "Z"


def test_close_leaves_no_namespace_veth_process_or_socket(tmp_path: Path) -> None:
    require_hosts()
    before = open_fds()
    with Cluster(2, tmp_path) as hosts:
        wirings = [host.wiring for host in hosts]
        started = [host.spawn(["sh", "-c", "sleep 600 & exec sleep 600"]) for host in hosts]
        inside = [pid for host in hosts for pid in wait_for_pids(host.namespace, 2)]
        assert {p.pid for p in started} <= set(inside)
    names = netns.namespaces()
    for wiring in wirings:
        assert wiring.namespace not in names
        assert not Path(f"/sys/class/net/{wiring.veth}").exists()
        assert wiring.gateway not in netns.ip("-4", "addr", "show")
    assert all(gone(pid) for pid in inside)
    assert open_fds() == before
    assert "hosts-proxy" not in [thread.name for thread in threading.enumerate()]


def wait_for_pids(namespace: str, count: int, timeout: float = 10.0) -> list[int]:
    """The pids in the namespace once there are `count` (a fork shows no other sign)."""
    deadline = time.monotonic() + timeout
    while len(pids := netns.pids(namespace)) < count:
        assert time.monotonic() < deadline, f"{pids} in {namespace}, not {count}"
        time.sleep(0.01)
    return pids


HOLDER = textwrap.dedent(
    """
    import signal, sys
    from pathlib import Path
    from tests.hosts import Cluster

    # Blocked before the link's thread starts, so that it inherits the block: the kernel
    # could deliver a Ctrl-C to that thread, and a main thread in pause() would never wake.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        with Cluster(1, Path(sys.argv[1])) as hosts:
            hosts[0].spawn(["sleep", "600"])
            print(hosts[0].namespace, hosts[0].wiring.veth, flush=True)
            signal.sigwait({signal.SIGINT})
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        sys.exit(130)
    """
)


def hold_a_cluster(directory: Path) -> tuple[subprocess.Popen[str], str, str]:
    """A Python process of its own holding a one-host cluster; its namespace and veth."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(directory)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert holder.stdout is not None
    with holder.stdout:
        namespace, veth = holder.stdout.readline().split()
    return holder, namespace, veth


def test_interrupted_run_cleans_up_and_a_killed_one_is_swept(tmp_path: Path) -> None:
    require_hosts()
    holder, namespace, veth = hold_a_cluster(tmp_path / "interrupted")
    try:
        with Cluster(1, tmp_path / "alongside") as alongside:
            assert namespace not in alongside.swept  # its owner runs: never touched
        holder.send_signal(signal.SIGINT)  # Ctrl-C: KeyboardInterrupt leaves the `with`
        assert holder.wait(timeout=90) == 130  # its teardown, on a loaded machine
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(holder.pid, signal.SIGKILL)
    assert namespace not in netns.namespaces()
    assert not Path(f"/sys/class/net/{veth}").exists()

    holder, namespace, veth = hold_a_cluster(tmp_path / "killed")
    left = wait_for_pids(namespace, 1)  # the sleep, once it has entered
    holder.kill()  # no teardown at all: the namespace, its veth and its sleep are left
    holder.wait(timeout=10)
    assert namespace in netns.namespaces()
    with Cluster(1, tmp_path / "next") as after:
        assert namespace in after.swept
    assert namespace not in netns.namespaces()
    assert not Path(f"/sys/class/net/{veth}").exists()
    assert all(gone(pid) for pid in left)
