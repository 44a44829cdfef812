"""HUP: the code on disk must load before the old children are retired.

    HUP ─► spawn the checker: the worker's own command in a fresh interpreter, with
           CHECK_ENV set, which loads the app, runs the before-fork hooks, reaches the broker
           and exits 0 without forking or touching the pidfile
    its stdout/stderr ─► one pipe ─► the master keeps the last lines
    its exit ─► pidfd (or SIGCHLD) wakes the loop ─► reap ─► 0: reload (warm stop, execv)
                                                           else: one ERROR line; keep serving

The master neither waits for the checker nor polls it: the pipe and the pidfd are in its
selector, and a deadline bounds a checker that hangs. Meanwhile the old children serve on.
A HUP during a check asks for one more check after it: the newest code is what counts.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence

from forkq.pool.output import ChildOutput

log = logging.getLogger("forkq.master")

CHECK_ENV = "FORKQ_RELOAD_CHECK"  # set for the checker: load, then exit without serving
CHECK_TIMEOUT = 300.0  # seconds the new code may take to load (a big preload included)
KEPT_LINES = 20


class _Check:
    def __init__(self, pid: int, output: ChildOutput, pidfd: int | None) -> None:
        self.pid = pid
        self.output = output
        self.pidfd = pidfd
        self.deadline = time.monotonic() + CHECK_TIMEOUT
        self.timed_out = False
        self.lines: deque[str] = deque(maxlen=KEPT_LINES)


class ReloadCheck:
    """`request()` on HUP; the master hands it every exit that is not a child's (`reaped`).
    `reload` is called once the new code is known to load (at once without a `command`)."""

    def __init__(
        self,
        command: Sequence[str],
        selector: selectors.BaseSelector,
        pidfds: bool,
        reload: Callable[[], None],
    ) -> None:
        self.command = list(command)
        self._selector = selector
        self._pidfds = pidfds
        self._reload = reload
        self._check: _Check | None = None
        self._again = False

    @property
    def deadline(self) -> float | None:
        return None if self._check is None else self._check.deadline

    @property
    def fds(self) -> list[int]:
        """The running check's pipe and pidfd: the master's own, which no child may keep."""
        check = self._check
        if check is None:
            return []
        return [check.output.fd] + ([check.pidfd] if check.pidfd is not None else [])

    def request(self) -> None:
        if not self.command:
            self._reload()
        elif self._check is not None:
            log.info("HUP: the new code is being checked; it will be checked again after")
            self._again = True
        else:
            log.info("HUP: checking that the new code loads before reloading")
            try:
                self._check = self._spawn()
            except OSError as exc:
                log.error("HUP refused: cannot start the check of the new code: %s", exc)

    def _spawn(self) -> _Check:
        read, write = os.pipe2(os.O_CLOEXEC)
        try:
            pid = os.posix_spawn(
                self.command[0],
                self.command,
                {**os.environ, CHECK_ENV: "1"},
                file_actions=[(os.POSIX_SPAWN_DUP2, write, 1), (os.POSIX_SPAWN_DUP2, write, 2)],
            )
        except OSError:
            os.close(read)
            raise
        finally:
            os.close(write)
        check = _Check(pid, ChildOutput(read), os.pidfd_open(pid) if self._pidfds else None)
        self._selector.register(read, selectors.EVENT_READ, self)
        if check.pidfd is not None:  # only to wake the loop, which then reaps
            self._selector.register(check.pidfd, selectors.EVENT_READ, self)
        return check

    def on_readable(self) -> None:
        check = self._check
        if check is not None and not check.output.closed:
            check.lines.extend(line for line in check.output.drain() if line.strip())
            if check.output.closed:
                self._selector.unregister(check.output.fd)

    def expire(self, now: float) -> None:
        """A checker past its deadline is killed (and then reaped as failed)."""
        check = self._check
        if check is not None and now >= check.deadline and not check.timed_out:
            check.timed_out = True
            os.kill(check.pid, signal.SIGKILL)

    def reaped(self, pid: int, status: int) -> None:
        """An exit that was no child's: if the checker's, reload or say why not."""
        check = self._check
        if check is None or pid != check.pid:
            return
        self.on_readable()
        self._close(check)
        self._check = None
        code = os.waitstatus_to_exitcode(status)
        if self._again:
            self._again = False
            self.request()
        elif code == 0 and not check.timed_out:
            log.info("HUP: the new code loads")
            self._reload()
        else:
            log.error("HUP refused, the running code keeps serving: %s", _why(check, code))

    def close(self) -> None:
        """The master is leaving: a check still running is stopped and collected."""
        check, self._check = self._check, None
        if check is not None:
            os.kill(check.pid, signal.SIGKILL)
            os.waitpid(check.pid, 0)
            self._close(check)

    def _close(self, check: _Check) -> None:
        if not check.output.closed:
            self._selector.unregister(check.output.fd)
        os.close(check.output.fd)
        if check.pidfd is not None:
            self._selector.unregister(check.pidfd)
            os.close(check.pidfd)


def _why(check: _Check, code: int) -> str:
    if check.timed_out:
        return f"the new code did not load within {CHECK_TIMEOUT:g}s"
    said = check.lines[-1].strip() if check.lines else "no output"
    how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    return f"the new code does not load ({how}): {said}"
