"""Fork per task (`--max-tasks-per-child 1`): the child keeps its connections and its
prefetched batch, and runs each task in a process forked for that task alone.

    child ─ fetch batch ─► (STARTED) ─► fork ────────────────────────► read record ─► store ─► ack
                                          └─► task process: die with the child, drop inherited
                                              connections, after-fork hooks, run the task,
                                              record ─► pipe ─► _exit

Each task runs in a process that has run nothing before it and ends with it, as with a new
child per task, but without a child's start-up (logs, signals, connections, first fetch) and
without the master in the loop for every task; RQ's work horse is the same idea.

Errors travel as data: a task's exception is a FAILURE record like any other. A task process
that dies without handing back a record (a signal, `os._exit`, a failed hook) makes the child
leave with the task still marked running in its slot, so the master releases the message
exactly as when a child dies.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from typing import NoReturn

from forkq.pool.child import (
    EXIT_BOOT_FAILED,
    EXIT_CRASHED,
    EXIT_OK,
    die_with_parent,
    flush_std_streams,
)
from forkq.result import ResultRecord, decode_record, encode_storable

_READ_SIZE = 65536


class TaskProcessDied(Exception):
    """The task's process ended without a record; `exit_code` is what the child should exit
    with (a failed after-fork hook counts as a failed boot)."""

    def __init__(self, status: int) -> None:
        self.status = status
        code = os.waitstatus_to_exitcode(status)
        self.exit_code = EXIT_BOOT_FAILED if code == EXIT_BOOT_FAILED else EXIT_CRASHED
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        super().__init__(f"the task's process died ({how}) before handing back its result")


def run_in_own_process(
    prepare: Callable[[], None], call: Callable[[], ResultRecord]
) -> ResultRecord:
    """`prepare()` then `call()` in a forked process; its record, back through a pipe."""
    flush_std_streams()  # or the task process would write the child's buffered output again
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        _task_process(parent, read_fd, write_fd, prepare, call)
    os.close(write_fd)
    try:
        payload = _read_all(read_fd)
    finally:
        os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if status != 0 or not payload:
        raise TaskProcessDied(status)
    return decode_record(payload)


def _task_process(
    parent: int,
    read_fd: int,
    write_fd: int,
    prepare: Callable[[], None],
    call: Callable[[], ResultRecord],
) -> NoReturn:
    code = EXIT_CRASHED
    try:
        os.close(read_fd)
        die_with_parent(parent)  # a child killed for a time limit takes its task with it
        try:
            prepare()
        except BaseException:
            code = EXIT_BOOT_FAILED
            raise
        _, payload = encode_storable(call())
        view = memoryview(payload)
        while view:
            view = view[os.write(write_fd, view) :]
        code = EXIT_OK
    except BaseException:
        traceback.print_exc()
    finally:
        flush_std_streams()
        os._exit(code)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, _READ_SIZE):
        chunks.append(chunk)
    return b"".join(chunks)
