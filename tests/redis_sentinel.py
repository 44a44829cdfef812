"""A Redis Sentinel group of the test's own, on spare ports: a primary, a replica and three
Sentinels (`redis-server --sentinel`) watching it with a quorum of 2, quick to fail over
(down after 1 s). `sentinel_group` (a fixture) starts one per test and kills all of it after.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.ports import server_port
from tests.redis_servers import PrivateRedis, need_programs, wait_until

MASTER = "forkqmaster"
DOWN_AFTER_MS = 1000


class SentinelGroup:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        (directory / "primary").mkdir()
        (directory / "replica").mkdir()
        quick = ("--appendonly", "no", "--repl-diskless-sync-delay", "0")  # no 5 s wait to sync
        self.primary = PrivateRedis(directory / "primary", extra=quick)
        self.replica = PrivateRedis(
            directory / "replica",
            extra=(*quick, "--replicaof", "127.0.0.1", str(self.primary.port)),
        )
        self.sentinel_ports = sorted(server_port() for _ in range(3))  # never a port twice
        self._sentinels: list[subprocess.Popen[bytes]] = []

    def url(self, db: int = 0, query: str = "") -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER}/{db}" + (f"?{query}" if query else "")

    def start(self, timeout: float = 30.0) -> None:
        """The primary, then its replica (in sync), then the Sentinels; returns once every
        Sentinel names the primary and knows the replica and the two other Sentinels."""
        deadline = time.monotonic() + timeout
        self.primary.start(timeout)
        self.replica.start(timeout)
        wait_until(deadline, "the replica in sync", self._replica_in_sync)
        for port in self.sentinel_ports:
            self._sentinels.append(self._start_sentinel(port))
        wait_until(deadline, "the Sentinels ready", self._sentinels_ready)

    def _start_sentinel(self, port: int) -> subprocess.Popen[bytes]:
        config = self.directory / f"sentinel-{port}.conf"  # a Sentinel rewrites its file
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {self.primary.port} 2\n"
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER} 5000\n"
        )
        return subprocess.Popen(
            ["redis-server", str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _replica_in_sync(self) -> bool:
        with _client(self.replica.port) as client:
            info: dict[str, object] = client.info("replication")
        return info.get("master_link_status") == "up"

    def _sentinels_ready(self) -> bool:
        for process in self._sentinels:
            if process.poll() is not None:
                raise RuntimeError(f"a Sentinel exited with {process.returncode}")
        return self._all_name(self.primary.port, others=2, replicas=1)

    def _all_name(self, port: int, others: int, replicas: int | None) -> bool:
        """Whether every Sentinel names `port` a primary that is up, and knows `others`
        Sentinels and `replicas` replicas (None: any number)."""
        for sentinel in self.sentinel_ports:
            with _client(sentinel) as client:
                state: dict[str, object] = client.sentinel_master(MASTER)
            up = state["port"] == port and state["is_master"] and not state["is_sdown"]
            known = state["num-other-sentinels"] == others
            if not (up and not state["is_odown"] and known):
                return False
            if replicas is not None and state["num-slaves"] != replicas:
                return False
        return True

    def kill_primary(self) -> None:
        """SIGKILL: no chance to send what it has not yet sent to its replica."""
        self.primary.kill()

    def wait_for_failover(self, timeout: float = 30.0) -> float:
        """Seconds until every Sentinel names the replica a primary that is up: what a client
        asking any of them finds (`get-master-addr-by-name` names it earlier, while the
        failover is still under way)."""
        started = time.monotonic()
        replica = self.replica.port
        wait_until(started + timeout, "the failover", lambda: self._all_name(replica, 2, None))
        return time.monotonic() - started

    def kill(self) -> None:
        for process in self._sentinels:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
        self.replica.kill()
        self.primary.kill()


def _client(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=1, decode_responses=True)


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    need_programs("redis-server")
    group = SentinelGroup(tmp_path)
    try:
        group.start()
        yield group
    finally:
        group.kill()
