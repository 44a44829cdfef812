"""Signals in the pool: which the master handles, how they reach its loop, what children do.

The master's handlers do nothing. `signal.set_wakeup_fd` makes the interpreter write each
caught signal's number to a non-blocking pipe, which the loop's selector watches; the loop reads
the numbers and acts. So no logging, I/O or forking ever happens inside a handler.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

#: What the master acts on. All are blocked across fork() so a child never runs these handlers.
MASTER_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGCHLD,
)

#: What a child ignores: these are the master's to act on (Ctrl-C or a hang-up reach the whole
#: process group; the master then tells each child what to do with TERM or KILL).
CHILD_IGNORES = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)


class SignalPipe:
    """The master's signal wake-up pipe: `fileno()` for the selector, `received()` to drain.
    SIGCHLD is caught only when child exits are not watched through pidfds."""

    def __init__(self, catch_sigchld: bool) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        for signum in MASTER_SIGNALS:
            if signum != signal.SIGCHLD or catch_sigchld:
                signal.signal(signum, _record_only)

    def fileno(self) -> int:
        return self._read

    @property
    def fds(self) -> tuple[int, int]:
        return self._read, self._write

    def received(self) -> list[int]:
        try:
            return list(os.read(self._read, 4096))
        except BlockingIOError:
            return []

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        os.close(self._read)
        os.close(self._write)


def _record_only(signum: int, frame: FrameType | None) -> None:
    """The wake-up fd already carries the signal number; nothing else happens here."""


def pidfds_work() -> bool:
    """Whether this kernel gives pidfds (Linux 5.3+) that a selector can wait on."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True
