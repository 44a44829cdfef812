"""Forking one child: its output pipe, the master's descriptors it must not keep, the fork.

A forked child inherits every descriptor the master has open, close-on-exec or not. It closes
the master's own at once (`child_main`): the signal pipe, the control socket and directory,
the other children's output pipes and pidfds, a HUP check's pipe and pidfd, the pidfile. Kept,
a child would hold another's pipe open after it exited, or hand the pidfile to the processes
its tasks start.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from forkq.pool.child import ChildProgram, child_main
from forkq.pool.scoreboard import SlotWriter
from forkq.pool.signals import MASTER_SIGNALS


def fork_child(
    program: ChildProgram, index: int, slot: SlotWriter, title: str, masters: Sequence[int]
) -> tuple[int, int]:
    """A child running `program` in slot `index`, which closes `masters` (the master's own
    descriptors); its pid, and the read end of the pipe that carries its stdout and stderr."""
    master_pid = os.getpid()

    def enter(output_fd: int, closed: list[int]) -> NoReturn:
        child_main(program, index, slot, master_pid, MASTER_SIGNALS, closed, output_fd, title)

    return fork_process(enter, masters)


def fork_process(
    enter: Callable[[int, list[int]], NoReturn], masters: Sequence[int]
) -> tuple[int, int]:
    """Fork a process that runs `enter(output_fd, fds to close)` and never returns; its pid,
    and the read end of the pipe that carries its stdout and stderr."""
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    for stream in (sys.stdout, sys.stderr):  # or the child would write it out again
        stream.flush()
    # Block our signals across fork so the child cannot run the master's handlers.
    signal.pthread_sigmask(signal.SIG_BLOCK, MASTER_SIGNALS)
    try:
        pid = os.fork()
        if pid == 0:
            enter(out_w, [*masters, out_r])
    except BaseException:
        os.close(out_r)
        raise
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, MASTER_SIGNALS)
        os.close(out_w)
    return pid, out_r
