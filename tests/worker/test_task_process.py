"""A task in a process of its own (fork per task): what comes back, and what dies with what."""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable

import msgspec
import pytest

from forkq.pool.child import EXIT_BOOT_FAILED, EXIT_CRASHED
from forkq.result import ResultRecord, success_record
from forkq.states import FAILURE, SUCCESS
from forkq.worker.task_process import TaskProcessDied, run_in_own_process

pytestmark = pytest.mark.timeout(30)


def nothing() -> None:
    pass


def value(record: ResultRecord) -> object:
    """The task's value: it comes back still encoded, to be stored as it is."""
    return msgspec.json.decode(record.result)


def test_the_record_comes_back_from_another_process() -> None:
    big = "x" * 300_000  # more than a pipe holds: the parent must read while it is written
    record = run_in_own_process(nothing, lambda: success_record([os.getpid(), big]))
    assert record.state == SUCCESS
    pid, text = value(record)
    assert pid != os.getpid() and text == big


def test_prepare_runs_in_the_task_process_before_the_call() -> None:
    prepared: list[int] = []
    record = run_in_own_process(
        lambda: prepared.append(os.getpid()), lambda: success_record(list(prepared))
    )
    assert value(record) not in ([], [os.getpid()])
    assert prepared == []  # the parent's list is untouched


def test_a_value_json_cannot_hold_becomes_a_failure() -> None:
    record = run_in_own_process(nothing, lambda: success_record(object()))
    assert (record.state, record.exc_type) == (FAILURE, "ResultNotSerializable")


def test_a_failed_hook_is_a_failed_boot_not_charged_to_the_task() -> None:
    def broken() -> None:
        raise RuntimeError("no database")

    with pytest.raises(TaskProcessDied, match="after-fork hook") as died:
        run_in_own_process(broken, lambda: success_record(1))
    assert (died.value.charged, died.value.exit_code) == (False, EXIT_BOOT_FAILED)


def test_a_fork_that_fails_is_not_charged_to_the_task(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_more_processes() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_more_processes)
    with pytest.raises(TaskProcessDied, match="cannot fork") as died:
        run_in_own_process(nothing, lambda: success_record(1))
    assert not died.value.charged


def test_a_process_the_task_leaves_running_does_not_hold_the_child() -> None:
    """A multiprocessing helper or a daemon inherits every descriptor the task process has;
    the child waits for the task's process, not for them."""

    def call() -> ResultRecord:
        helper = os.fork()
        if helper == 0:
            time.sleep(30)
            os._exit(0)
        return success_record(helper)

    started = time.monotonic()
    record = run_in_own_process(nothing, call)
    helper = value(record)
    assert isinstance(helper, int)
    os.kill(helper, signal.SIGKILL)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("end", "text"),
    [
        (lambda: os._exit(1), "exit code 1"),
        (lambda: os.kill(os.getpid(), signal.SIGKILL), "killed by signal 9"),
    ],
)
def test_a_process_that_ends_without_a_record_is_reported(
    end: Callable[[], object], text: str
) -> None:
    def call() -> ResultRecord:
        end()
        return success_record(None)

    with pytest.raises(TaskProcessDied, match=text) as died:
        run_in_own_process(nothing, call)
    assert (died.value.charged, died.value.exit_code) == (True, EXIT_CRASHED)


def test_the_task_process_dies_with_the_process_that_forked_it() -> None:
    """What a hard time limit relies on: the master kills the child, the task goes too."""
    read_fd, write_fd = os.pipe()
    middle = os.fork()
    if middle == 0:  # the child's part
        os.close(read_fd)

        def call() -> ResultRecord:
            os.write(write_fd, f"{os.getpid()}\n".encode())
            time.sleep(60)
            return success_record(None)

        try:
            run_in_own_process(nothing, call)
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        task_pid = int(os.read(read_fd, 64))
        task_fd = os.pidfd_open(task_pid)
        os.kill(middle, signal.SIGKILL)
        os.waitpid(middle, 0)
        ready, _, _ = select.select([task_fd], [], [], 10)
        assert ready == [task_fd], "the task's process outlived its parent"
        os.close(task_fd)
    finally:
        os.close(read_fd)
