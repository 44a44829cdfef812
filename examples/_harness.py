"""What every example shares: a throwaway SQLite broker and a real `forkq worker` on it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from forkq import Forkq

HERE = Path(__file__).resolve().parent


@contextmanager
def running_worker(
    app: Forkq, module: str, concurrency: int, extra_env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Point `app` at a fresh SQLite file and run `forkq worker -A module` on it."""
    with tempfile.TemporaryDirectory(prefix="forkq-example-") as workdir:
        url = f"sqlite:///{workdir}/forkq.sqlite3"
        app.configure(broker_url=url)
        env = {**os.environ, "FORKQ_BROKER_URL": url, **(extra_env or {})}
        command = [
            sys.executable,
            "-m",
            "forkq",
            "worker",
            "-A",
            module,
            "-c",
            str(concurrency),
            "--prefetch",
            "1",
            "-l",
            "warning",
        ]
        worker = subprocess.Popen(command, cwd=HERE, env=env, start_new_session=True)
        try:
            yield worker
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
            app.close()
