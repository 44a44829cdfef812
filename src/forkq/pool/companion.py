"""Companions: processes the master forks beside its children and keeps running (the periodic
scheduler). A companion takes no work from the pool: it has no scoreboard slot and does not
count in the pool's size. As a child does, it writes its output through the master, dies with
the master (`PR_SET_PDEATHSIG`), is TERMed on a warm shutdown and KILLed on a cold one.

    master: spawn_due ─► fork ─► companion_main ─► program.run_companion(stop) ─► _exit
            its exit, reaped ─► forked again: at once if it ran HEALTHY seconds, else after a
            back-off (0.2 s doubling, up to 10 s); never given up on while the pool runs
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import time
import traceback
from collections.abc import Sequence
from typing import NoReturn, Protocol

from setproctitle import setproctitle

from forkq.logs import Origin, configure_child, relay
from forkq.pool.child import EXIT_CRASHED, EXIT_OK, Stopping, StopSignal, leave, reset_inherited
from forkq.pool.output import ChildOutput
from forkq.pool.signals import MASTER_SIGNALS
from forkq.pool.spawn import fork_process

HEALTHY = 10.0  # seconds: a companion that lived this long is forked again at once
MAX_DELAY = 10.0
_EXITED = "companion exited"  # selector data of a companion's pidfd: reaped after every wake-up
log = logging.getLogger("forkq.master")


class CompanionProgram(Protocol):
    """What a companion runs."""

    @property
    def label(self) -> str:
        """How logs and `ps` name it ("scheduler")."""
        ...

    def run_companion(self, stop: StopSignal) -> int:
        """Runs in the forked process; returns its exit code."""
        ...


class Companion:
    """One companion, running (`pid`) or waiting to be forked again (`not_before`)."""

    def __init__(self, program: CompanionProgram) -> None:
        self.program = program
        self.pid = 0
        self.output: ChildOutput | None = None
        self.pidfd: int | None = None
        self.started = 0.0  # monotonic
        self.failures = 0  # quick exits in a row
        self.not_before = 0.0  # monotonic


class Companions:
    """The master's companions: forked, relayed, reaped and stopped with its children."""

    def __init__(
        self,
        programs: Sequence[CompanionProgram],
        selector: selectors.BaseSelector,
        pidfds: bool,
        title: str,
    ) -> None:
        self.all = [Companion(p) for p in programs]
        self._selector, self._pidfds, self._title = selector, pidfds, title

    @property
    def running(self) -> bool:
        return any(c.pid for c in self.all)

    @property
    def fds(self) -> list[int]:
        """Their descriptors in the master, which every process it forks closes."""
        return [fd for c in self.all for fd in (c.output.fd if c.output else None, c.pidfd) if fd]

    def next_spawn(self) -> float | None:
        """When the next one waiting may be forked (monotonic), if one waits."""
        return min((c.not_before for c in self.all if not c.pid), default=None)

    def spawn_due(self, masters: Sequence[int]) -> None:
        """Fork each one not running whose back-off has passed; `masters`: the master's own
        descriptors, which it closes."""
        now = time.monotonic()
        for c in self.all:
            if not c.pid and now >= c.not_before:
                self._spawn(c, masters)

    def _spawn(self, c: Companion, masters: Sequence[int]) -> None:
        master_pid, title = os.getpid(), self._title

        def enter(output_fd: int, closed: list[int]) -> NoReturn:
            companion_main(c.program, master_pid, closed, output_fd, title)

        # The master's own list names the other companions' descriptors too: each closed once.
        c.pid, out_r = fork_process(enter, sorted({*masters, *self.fds}))
        c.output, c.started = ChildOutput(out_r), time.monotonic()
        self._selector.register(out_r, selectors.EVENT_READ, c)
        if self._pidfds:
            c.pidfd = os.pidfd_open(c.pid)
            self._selector.register(c.pidfd, selectors.EVENT_READ, _EXITED)

    def relay(self, c: Companion) -> None:
        """Log the whole lines it has written."""
        if c.output is None or c.output.closed:
            return
        lines = c.output.drain()
        if c.output.closed:
            self._selector.unregister(c.output.fd)
        for line in lines:
            relay(line, Origin(c.program.label, c.pid))

    def reaped(self, pid: int, status: int, stopping: bool) -> Companion | None:
        """The companion `pid` was, its pipe and pidfd closed and its next fork planned; None
        if `pid` is no companion."""
        c = next((c for c in self.all if c.pid == pid and pid), None)
        if c is None:
            return None
        self.relay(c)
        if c.output is not None:
            if not c.output.closed:
                self._selector.unregister(c.output.fd)
            os.close(c.output.fd)
        if c.pidfd is not None:
            self._selector.unregister(c.pidfd)
            os.close(c.pidfd)
        c.pid, c.output, c.pidfd = 0, None, None
        clean = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        quick = time.monotonic() - c.started < HEALTHY
        c.failures = c.failures + 1 if quick and not (clean and stopping) else 0
        delay = min(MAX_DELAY, 0.1 * 2**c.failures) if c.failures else 0.0
        c.not_before = time.monotonic() + delay
        if not (clean and stopping):
            code, again = os.waitstatus_to_exitcode(status), f"; forked again in {delay:.1f}s"
            log.warning(
                "%s (pid %d) exited (%d)%s", c.program.label, pid, code, "" if stopping else again
            )
        return c

    def kill(self, signum: int) -> None:
        for c in self.all:
            if c.pid:
                with contextlib.suppress(ProcessLookupError):  # gone: the loop reaps it
                    os.kill(c.pid, signum)


def companion_main(
    program: CompanionProgram,
    master_pid: int,
    closed: Sequence[int],
    output_fd: int,
    title: str,
) -> NoReturn:
    """Entered right after fork, with the master's signals still blocked: `output_fd` becomes
    stdout and stderr, as a child's does (pool/child.py)."""
    code = EXIT_CRASHED
    try:
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.close(output_fd)
        configure_child(lambda: ("", ""))
        reset_inherited(master_pid, MASTER_SIGNALS, closed)
        setproctitle(f"{title} {program.label}")
        stop = StopSignal()
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        code = program.run_companion(stop)
    except Stopping:
        code = EXIT_OK
    except BaseException:
        traceback.print_exc()
    finally:
        leave(code)
