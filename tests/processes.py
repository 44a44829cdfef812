"""A test's subprocess whose output is collected as it comes, by a reader thread, so a test
awaits a line instead of polling for it: the one implementation under
tests.conftest.WorkerProcess (a local `forkq worker`) and tests.hosts.process.HostProcess
(a process inside a test host)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path


class CollectedProcess:
    """Started in a session (process group) of its own, stdout and stderr in one pipe;
    `stop()` kills that group. `stdin` is Popen's (None: this process's own)."""

    def __init__(
        self,
        argv: Sequence[str],
        cwd: Path | None,
        env: dict[str, str],
        stdin: int | None = None,
    ) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=env,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._lines: list[str] = []
        self._ended = False  # its output closed: nothing more will come
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._changed:
                self._lines.append(raw.decode(errors="replace"))
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(p) for p in path.read_text().split()]

    def all_children(self, count: int, timeout: float = 10.0) -> list[int]:
        """The pids of its children once `count` are forked (serving one task says only
        that one is up); sorted, to compare with a later look."""
        deadline = time.monotonic() + timeout
        while len(pids := self.children()) < count:
            assert time.monotonic() < deadline, f"{len(pids)} of {count} children forked"
            time.sleep(0.01)  # forks leave no event a test can wait on
        return sorted(pids)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def log(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def wait_for_log(self, text: str, timeout: float = 30.0, count: int = 1) -> str:
        """Until `text` has been printed `count` times (or the process ended without it);
        returns the output so far."""
        with self._changed:
            found = self._changed.wait_for(
                lambda: "".join(self._lines).count(text) >= count or self._ended,
                timeout,
            )
        log = self.log()
        assert found and log.count(text) >= count, (
            f"{text!r} not printed {count}x within {timeout}s by {self.argv[-3:]}:\n{log}"
        )
        return log

    def stop(self) -> None:
        """SIGKILL to its process group, then reaped; its pipes closed."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
