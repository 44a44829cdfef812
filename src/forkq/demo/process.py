"""Running a `forkq worker` as a child process of a script: the demo's and the examples'."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO


@contextmanager
def worker_process(
    app_spec: str,
    broker_url: str,
    *worker_args: str,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    output: IO[bytes] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `forkq worker -A app_spec` on `broker_url`; on leaving, stop it with SIGTERM (and
    SIGKILL to its whole group if it has not exited within a minute). Its exit code is then
    in `.returncode`."""
    command = [sys.executable, "-m", "forkq", "worker", "-A", app_spec, "--broker", broker_url]
    worker = subprocess.Popen(
        [*command, *worker_args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        start_new_session=True,  # its own group: a Ctrl-C here does not reach it twice
    )
    try:
        yield worker
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
