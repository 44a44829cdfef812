"""A Redis Cluster of the tests' own, on spare ports: three primaries (and, if asked, a replica
each), made with `redis-cli --cluster create`, quick to fail over (a node is down after 1 s).

`shared_cluster()` starts one per test run, on first use, for the conformance suites (each test
keeps to a prefix of its own); `redis_cluster` (a fixture) starts one with replicas per test,
for tests that kill its nodes. Every node is killed at the end.
"""

from __future__ import annotations

import atexit
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.ports import server_port
from tests.redis_servers import PrivateRedis, need_programs, wait_until

NODE_TIMEOUT_MS = 1000


class PrivateCluster:
    def __init__(self, directory: Path, primaries: int = 3, replicas: int = 0) -> None:
        self.replicas = replicas
        self.nodes: list[PrivateRedis] = []
        for index in range(primaries * (1 + replicas)):
            (directory / f"node{index}").mkdir()
            settings = (
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                "--cluster-port", str(server_port()),  # the bus, below the ephemeral range
                "--appendonly", "no",
                "--repl-diskless-sync-delay", "0",
            )  # fmt: skip
            self.nodes.append(PrivateRedis(directory / f"node{index}", extra=settings))

    @property
    def addresses(self) -> str:
        return ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def url(self, **params: object) -> str:
        """A `redis+cluster://` URL naming every node, as a user's might."""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"redis+cluster://{self.addresses}" + (f"/?{query}" if query else "")

    def test_url(self, **params: object) -> str:
        """`url` under a prefix of the test's own."""
        return self.url(prefix=f"forkq-test-{uuid.uuid4().hex[:10]}", **params)

    def start(self, timeout: float = 60.0) -> None:
        """Every node, then the cluster made of them; returns once every node says it is ok."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.start(timeout)
        made = subprocess.run(
            ["redis-cli", "--cluster", "create",
             *(f"127.0.0.1:{node.port}" for node in self.nodes),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True, timeout=timeout, check=False,
        )  # fmt: skip
        if made.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {made.stdout[-500:]!r}")
        wait_until(deadline, "the cluster ok on every node", self.all_ok)

    def all_ok(self) -> bool:
        return all(self.ok(node) for node in self.nodes if node.proc and node.proc.poll() is None)

    def ok(self, node: PrivateRedis) -> bool:
        with node_client(node.port) as client:
            text: str = client.execute_command("CLUSTER", "INFO")
        info = dict(line.split(":", 1) for line in text.split() if ":" in line)
        return info.get("cluster_state") == "ok" and info.get("cluster_slots_ok") == "16384"

    def primary_of(self, key: str) -> PrivateRedis:
        """The node serving `key`'s slot now."""
        for node in self.nodes:
            if node.proc is None or node.proc.poll() is not None:
                continue
            with node_client(node.port) as client:
                slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
                for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        return next(n for n in self.nodes if n.port == int(primary[1]))
        raise RuntimeError(f"no live node serves {key!r}")

    def keys(self, pattern: str) -> list[str]:
        """Keys matching `pattern` on every live primary."""
        found: list[str] = []
        for node in self.nodes:
            if node.proc is None or node.proc.poll() is not None:
                continue
            with node_client(node.port) as client:
                found += list(client.scan_iter(match=pattern, count=1000))
        return found

    def delete(self, pattern: str) -> None:
        for node in self.nodes:
            if node.proc is None or node.proc.poll() is not None:
                continue
            with node_client(node.port) as client:
                if client.info("replication").get("role") == "master":
                    for key in client.scan_iter(match=pattern, count=1000):
                        client.delete(key)

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()


def node_client(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=2, decode_responses=True)


_SHARED: list[PrivateCluster] = []


def shared_cluster() -> PrivateCluster:
    """One cluster of three primaries for the whole run, started on first use and killed
    when the run ends."""
    if not _SHARED:
        need_programs("redis-server", "redis-cli")
        directory = Path(tempfile.mkdtemp(prefix="forkq-cluster-"))
        cluster = PrivateCluster(directory)
        atexit.register(cluster.kill)
        try:
            cluster.start()
        except BaseException:
            cluster.kill()
            raise
        _SHARED.append(cluster)
    return _SHARED[0]


def cluster_test_url(**params: object) -> str:
    return shared_cluster().test_url(**params)


def clean_shared(url: str) -> None:
    """Delete what a test left under its URL's prefix on the shared cluster."""
    prefix = url.split("prefix=")[1].split("&")[0]
    for pattern in (f"{{{prefix}:*", f"{prefix}:*"):
        shared_cluster().delete(pattern)


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[PrivateCluster]:
    """Three primaries with a replica each, of this test only."""
    need_programs("redis-server", "redis-cli")
    cluster = PrivateCluster(tmp_path, replicas=1)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.kill()
