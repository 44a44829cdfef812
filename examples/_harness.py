"""What every example shares: a throwaway SQLite broker and a real `forkq worker` on it."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from forkq import Forkq
from forkq.demo.process import worker_process

HERE = Path(__file__).resolve().parent


@contextmanager
def running_worker(
    app: Forkq, module: str, concurrency: int, extra_env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Point `app` at a fresh SQLite file and run `forkq worker -A module` on it."""
    with tempfile.TemporaryDirectory(prefix="forkq-example-") as workdir:
        url = f"sqlite:///{workdir}/forkq.sqlite3"
        app.configure(broker_url=url)
        args = ("-c", str(concurrency), "--prefetch", "1", "-l", "warning")
        try:
            with worker_process(module, url, *args, cwd=str(HERE), env=extra_env) as worker:
                yield worker
        finally:
            app.close()
