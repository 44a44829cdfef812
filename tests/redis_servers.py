"""Redis servers a test starts for itself, on spare ports, and stops: for restarts, SCRIPT
FLUSH, TLS, and anything else the shared server must not see. `private_redis` and
`private_tls_redis` (fixtures, in tests/conftest.py) start one per test."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import pytest
import redis

from tests.ports import server_port
from tests.tls import make_certificates


class PrivateRedis:
    """A redis-server of the test's own on a spare port, persisting every write (AOF); with
    `tls`, it speaks only TLS, with a certificate from a throwaway CA. `extra` are more
    command-line settings, after forkq's (a later one wins): `--maxmemory 2mb`, say."""

    def __init__(self, directory: Path, tls: bool = False, extra: Sequence[str] = ()) -> None:
        self.directory = directory
        self.extra = list(extra)  # more redis-server arguments (a replica's --replicaof)
        self.port = server_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.tls = make_certificates(directory) if tls else None

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls['ca']}"
        return f"redis://127.0.0.1:{self.port}/0"

    def _listen_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return [
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--tls-cert-file",
            self.tls["cert"],
            "--tls-key-file",
            self.tls["key"],
            "--tls-ca-cert-file",
            self.tls["ca"],
            "--tls-auth-clients",
            "no",
        ]

    def start(self, timeout: float = 20.0) -> None:
        """Starts the server and returns once it answers a PING; if it does not within
        `timeout` seconds, the server is stopped before the error is raised."""
        with self.log.open("ab") as log:  # appended across restarts, for `said`
            self.proc = self._spawn(log)
        try:
            self._wait_until_answering(timeout)
        except BaseException:
            self.kill()
            raise

    @property
    def log(self) -> Path:
        return self.directory / "redis-server.log"

    def said(self) -> str:
        """The last lines the server printed."""
        return " | ".join(self.log.read_text(errors="replace").splitlines()[-5:])

    def _spawn(self, log: BinaryIO) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                "redis-server",
                *self._listen_args(),
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
                *self.extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def _wait_until_answering(self, timeout: float) -> None:
        assert self.proc is not None
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline, last = time.monotonic() + timeout, None
        try:
            while time.monotonic() < deadline:  # a server that just started has no other signal
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"private redis-server exited with {self.proc.returncode}: {self.said()}"
                    )
                try:
                    if client.ping():
                        return
                except redis.ConnectionError as error:
                    last = error
                    time.sleep(0.05)
        finally:
            client.close()
        raise RuntimeError(f"private redis-server not answering after {timeout}s: {last}")

    def stop(self) -> None:
        """SIGTERM (redis saves the AOF and exits); SIGKILL if it has not within 20 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=10)


@contextlib.contextmanager
def running(server: PrivateRedis, startup_timeout: float = 20.0) -> Iterator[PrivateRedis]:
    """The server started, and stopped on the way out whether the test passed, failed or the
    start itself gave up."""
    try:
        server.start(startup_timeout)
        yield server
    finally:
        server.stop()


def wait_until(deadline: float, what: str, ready: Callable[[], bool]) -> None:
    """Until `ready()` (a Redis error counts as not yet), or a RuntimeError at `deadline`."""
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)  # servers starting, forming a cluster or failing over give no signal
    raise RuntimeError(f"{what}: not within the deadline")


def need_programs(*programs: str) -> None:
    """Skip without them; with CI=true, fail."""
    for program in programs:
        if shutil.which(program) is None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"{program} is not installed (CI=true: no skipping)")
            pytest.skip(f"{program} is not installed")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    need_programs("redis-server")
    with running(PrivateRedis(tmp_path)) as server:
        yield server


@pytest.fixture
def private_tls_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    need_programs("redis-server", "openssl")
    with running(PrivateRedis(tmp_path, tls=True)) as server:
        yield server
