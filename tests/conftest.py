"""Shared fixtures: throwaway SQLite URLs and real `forkq worker` processes.

Every worker a test starts runs in its own session (process group); teardown kills that group
and nothing else, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forkq import Forkq

PING_TIMEOUT = 30.0


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/forkq.sqlite3"


E2E_APP = textwrap.dedent(
    """
    import os, time
    from forkq import Forkq

    app = Forkq("e2e")

    @app.task
    def add(x, y):
        return x + y

    @app.task
    def ping():
        return os.getpid()

    @app.task
    def slow_add(x, y, seconds):
        time.sleep(seconds)
        return x + y

    @app.task
    def die():
        os._exit(1)

    if os.environ.get("E2E_FAIL_BOOT"):
        @app.on_after_fork
        def broken_hook():
            raise RuntimeError("cannot connect to the database")
    """
)


class WorkerProcess:
    """A `forkq worker` subprocess in its own process group."""

    def __init__(self, app_dir: Path, url: str, *args: str, env: dict[str, str] | None = None):
        self.log_path = app_dir / f"worker-{time.monotonic_ns()}.log"
        env = {**os.environ, "FORKQ_BROKER_URL": url, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "forkq", "worker", "-A", "e2eapp", *args],
            cwd=app_dir,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(p) for p in path.read_text().split()]

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def e2e_dir(tmp_path: Path) -> Path:
    (tmp_path / "e2eapp.py").write_text(E2E_APP)
    return tmp_path


@pytest.fixture
def client(e2e_dir: Path, sqlite_url: str) -> Iterator[Forkq]:
    app = Forkq("e2e", broker=sqlite_url)
    yield app
    app.close()


@pytest.fixture
def start_worker(e2e_dir: Path, sqlite_url: str) -> Iterator[object]:
    started: list[WorkerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        worker = WorkerProcess(e2e_dir, sqlite_url, *args, env=env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_until_serving(client: Forkq, worker: WorkerProcess) -> None:
    """Event-based readiness: a ping task answered by the worker."""
    try:
        client.send_task("e2eapp.ping").get(timeout=PING_TIMEOUT)
    except Exception:
        print(worker.log())
        raise
