"""A child's life after `fork()`: reset what it inherited, run the program, `_exit`.

A child never returns into the master's code: whatever happens, it leaves through
`os._exit`, so no inherited finalizer, atexit hook or buffered connection runs twice.
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from types import FrameType
from typing import NoReturn, Protocol

from forkq.logs import configure_child
from forkq.pool.scoreboard import SlotWriter
from forkq.pool.signals import CHILD_IGNORES

EXIT_OK = 0
EXIT_BOOT_FAILED = 3  # the program failed before it could take work (hook, connection)
EXIT_CRASHED = 70  # an unexpected error escaped the program

_PR_SET_PDEATHSIG = 1


class Stopping(BaseException):
    """Raised in a child that was told to stop while it was waiting for work. It comes from a
    signal handler, so at any point of the wait, inside a broker client too: a BaseException,
    so that no `except Exception` on the way (one reading a publisher's bytes defensively, say)
    takes it for a failure of what was being read."""


class Terminated(BaseException):
    """Raised in a busy child by SIGTERM when the master is terminating the task it runs (a
    revoke with terminate): the task unwinds (its `finally` blocks and context managers run)
    and the child leaves at once, its slot still naming the task, for the master to settle
    (`forkq.worker.supervision`). A BaseException, like `Stopping`, so that no `except
    Exception` on the way takes it for the task's failure."""


def _never() -> bool:
    return False


class StopSignal:
    """SIGTERM in a child: a flag while it works, an immediate `Stopping` while it waits.

    Interrupting a wait is safe because the master releases whatever a child held when it
    exits; interrupting a task is not, so a busy child only notes the request, unless the
    master is terminating that very task (`terminating`, set by the program: the bulletin
    says so), when it raises `Terminated` wherever the task is.
    """

    def __init__(self) -> None:
        self.requested = False
        self._interruptible = False
        self.terminating: Callable[[], bool] = _never  # whether the running task is ended
        signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self._interruptible:
            self._interruptible = False
            raise Stopping()
        if self.terminating():
            raise Terminated()

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        if self.requested:
            raise Stopping()
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False


class ChildProgram(Protocol):
    """What the worker layer runs in each child."""

    def run_child(self, index: int, slot: SlotWriter, stop: StopSignal) -> int:
        """Runs in the forked child; returns its exit code."""
        ...


def child_main(
    program: ChildProgram,
    index: int,
    slot: SlotWriter,
    master_pid: int,
    master_signals: Sequence[signal.Signals],
    inherited_fds: Sequence[int],
    output_fd: int,
    title: str,
) -> NoReturn:
    """Entered right after fork, with `master_signals` still blocked. `output_fd` becomes the
    child's stdout and stderr: a pipe the master reads."""
    code = EXIT_CRASHED
    try:
        _redirect_output(output_fd, slot)
        reset_inherited(master_pid, master_signals, inherited_fds)
        slot.title = f"{title} child {index}"
        slot.start(os.getpid())
        stop = StopSignal()
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        code = program.run_child(index, slot, stop)
    except (Stopping, Terminated):
        code = EXIT_OK
    except BaseException:
        traceback.print_exc()
    finally:
        leave(code)


def leave(code: int) -> NoReturn:
    """How a forked process ends: what it printed goes out, then `_exit`, so that nothing it
    inherited (finalizers, atexit hooks, buffered connections) runs a second time."""
    flush_std_streams()
    os._exit(code)


def _redirect_output(output_fd: int, slot: SlotWriter) -> None:
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    os.close(output_fd)
    configure_child(lambda: (slot.task_id, slot.task_name))


def reset_inherited(
    master_pid: int, master_signals: Sequence[signal.Signals], inherited_fds: Sequence[int]
) -> None:
    signal.set_wakeup_fd(-1)
    for fd in inherited_fds:
        os.close(fd)
    for signum in master_signals:
        signal.signal(signum, signal.SIG_DFL)
    for signum in CHILD_IGNORES:
        signal.signal(signum, signal.SIG_IGN)
    # USR1 writes every thread's stack to stderr from C, safe at any moment.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    die_with_parent(master_pid)


_libc = ctypes.CDLL(None, use_errno=True)  # loaded in the master, before any fork


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when the process that forked it dies (the kernel sends it);
    exit now if that already happened, before prctl took effect."""
    if _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:
        os._exit(EXIT_BOOT_FAILED)


def flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
