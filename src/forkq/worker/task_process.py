"""Fork per task (`--max-tasks-per-child 1`): the child keeps its connections and runs each
task in a process forked for that task alone.

    child ─ fetch ─► (STARTED) ─► memfd ─► fork ───────────────────────► waitpid ─► read memfd
                                            └─► task process: die with the child, after-fork
                                                hooks, run the task, record ─► memfd ─► _exit
          ─► store ─► ack

Each task runs in a process that has run nothing before it and ends with it, as with a new
child per task, but without a child's start-up (logs, signals, connections, first fetch) and
without the master in the loop for every task; RQ's work horse is the same idea.

The record comes back in an anonymous memory file rather than a pipe: the child waits for the
task's process to exit (`waitpid`), never for an end of file that any process the task left
running (a multiprocessing helper, a daemon) would hold off. The file starts with a byte that
says what follows (`_Handed`): the record, or word that an after-fork hook failed; an empty
file, that the process died first. The record's `result` stays encoded (`msgspec.Raw`): the
child stores those bytes as they are, without building the value.

Errors travel as data: a task's exception is a FAILURE record like any other. A task process
that dies without handing back a record (a signal, `os._exit`) makes the child leave with the
task still marked running, so the master releases the message exactly as when a child dies.
A failed after-fork hook, or a fork that fails, is the child's failure to boot, not the task's:
`TaskProcessDied.charged` is False and the message goes back uncounted.
"""

from __future__ import annotations

import enum
import os
import traceback
from collections.abc import Callable
from typing import NoReturn

import msgspec

from forkq import aio
from forkq.pool.child import (
    EXIT_BOOT_FAILED,
    EXIT_CRASHED,
    EXIT_OK,
    die_with_parent,
    flush_std_streams,
    leave,
)
from forkq.result import ResultRecord, encode_storable


class _Handed(enum.IntEnum):
    """The first byte the task's process writes in the memory file: what follows. An empty
    file: it died before handing anything back."""

    RECORD = 1  # its record, encoded, follows
    HOOK_FAILED = 2  # an after-fork hook raised: the task never ran


class _EncodedResult(ResultRecord, frozen=True, kw_only=True):
    """A record as the task's process sent it, its value still JSON."""

    result: msgspec.Raw = msgspec.Raw(b"null")


_decoder = msgspec.json.Decoder(_EncodedResult)


class TaskProcessDied(Exception):
    """The task's process ended without a record. `charged`: whether the task itself is to
    blame (it ran and died), so that its message counts a delivery; `exit_code`: what the
    child should exit with."""

    def __init__(self, reason: str, *, charged: bool) -> None:
        super().__init__(reason)
        self.charged = charged
        self.exit_code = EXIT_CRASHED if charged else EXIT_BOOT_FAILED


def run_in_own_process(
    prepare: Callable[[], None], call: Callable[[], ResultRecord]
) -> ResultRecord:
    """`prepare()` then `call()` in a forked process; its record, once that process exited."""
    flush_std_streams()  # or the task process would write the child's buffered output again
    record_fd = os.memfd_create("forkq-task-record", os.MFD_CLOEXEC)
    try:
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:  # EAGAIN, ENOMEM: out of processes or memory for now
            raise TaskProcessDied(f"cannot fork the task's process: {exc}", charged=False) from exc
        if pid == 0:
            _task_process(parent, record_fd, prepare, call)
        _, status = os.waitpid(pid, 0)
        payload = os.pread(record_fd, os.fstat(record_fd).st_size, 0)
    finally:
        os.close(record_fd)
    handed = _Handed(payload[0]) if payload else None
    if handed is _Handed.HOOK_FAILED:
        raise TaskProcessDied("an after-fork hook failed in the task's process", charged=False)
    if status != 0 or handed is not _Handed.RECORD:
        code = os.waitstatus_to_exitcode(status)
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        raise TaskProcessDied(
            f"the task's process died ({how}) before handing back its result", charged=True
        )
    return _decoder.decode(memoryview(payload)[1:])


def _task_process(
    parent: int, record_fd: int, prepare: Callable[[], None], call: Callable[[], ResultRecord]
) -> NoReturn:
    code = EXIT_CRASHED
    try:
        die_with_parent(parent)  # a child killed for a time limit takes its task with it
        try:
            prepare()
        except BaseException:
            _write_all(record_fd, bytes((_Handed.HOOK_FAILED,)))
            code = EXIT_BOOT_FAILED
            raise
        _, payload = encode_storable(call())
        _write_all(record_fd, bytes((_Handed.RECORD,)))
        _write_all(record_fd, payload)
        code = EXIT_OK
        aio.close_process_loop()  # the loop of async hooks and tasks, made in this process
    except BaseException:
        traceback.print_exc()
    finally:
        leave(code)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
