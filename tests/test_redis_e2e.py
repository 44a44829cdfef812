"""Redis-specific end to end: a worker rides out a Redis restart and loses nothing."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from forkq import Forkq
from forkq.envelope import make_message
from tests.conftest import WorkerProcess, wait_until_serving

pytestmark = pytest.mark.timeout(180)


class PrivateRedis:
    """A redis-server of the test's own on a spare port, persisting every write (AOF)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # a server that just started has no other signal
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # redis saves the AOF and exits
            self.proc.wait(timeout=20)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed (CI=true: no skipping)")
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def test_worker_survives_a_redis_restart_and_loses_nothing(
    private_redis: PrivateRedis, e2e_dir: Path
) -> None:
    url = private_redis.url + "?lease_ttl=3"
    client = Forkq("e2e", broker=url)
    worker = WorkerProcess(e2e_dir, url, "-c", "2", "-l", "info")
    try:
        wait_until_serving(client, worker)
        queue = client.settings.default_queue
        calls = [make_message("e2eapp.slow_add", [i, 0, 0.01], {}, queue=queue) for i in range(300)]
        results = client.publish_many(calls)
        results[30].get(timeout=60)
        private_redis.stop()
        worker.wait_for_log("unreachable")
        private_redis.start()
        assert [r.get(timeout=120) for r in results] == list(range(300))
        log = worker.log()
        assert "reachable again" in log
        # One line per outage and process, not one per attempt.
        assert log.count("unreachable") <= 3, log
        assert worker.proc.poll() is None
    finally:
        worker.stop()
        client.close()
