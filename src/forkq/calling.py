"""A decoded message to its outcome: the one path that a worker's child and eager mode share.

    decoded message ─► accept: the task, unknown or expired ─► MessageRejected
                          (a chord's body: its header's results gathered, put first)
                    ─► execute: request set ─► invoke the task ─► ResultRecord
                          SUCCESS │ RETRY (self.retry(), autoretry_for) │ FAILURE
                    ─► RETRY: next_try, the message of the next try (or RetryRefused)

What surrounds it differs: the worker fetches, stores, acks and publishes the next try
(worker/executor.py); eager mode runs the next try at once and stores into an in-process
backend (eager.py). What a task sees and what its outcome is are decided here only.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Collection
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any

import msgspec

from forkq import aio
from forkq.arguments import convert_message
from forkq.canvas.effects import gathered, not_run
from forkq.engines.contract import check_delay
from forkq.envelope import Message, readable_time
from forkq.exceptions import MessageRejected, Retry
from forkq.result import ResultRecord, failure_record, success_record
from forkq.states import RETRY
from forkq.task import Request, Task

if TYPE_CHECKING:
    from forkq.app import Forkq

log = logging.getLogger("forkq.worker")

# The task names an unknown-task reason lists at most, and their characters (the whole reason
# must stay well within MAX_REASON).
UNKNOWN_TASK_NAMES = 10
UNKNOWN_TASK_CHARS = 400

# Calls the task (the argument) and gives back its value: where the soft time limit goes.
Runner = Callable[[Callable[[], Any]], Any]


def to_the_end(call: Callable[[], Any]) -> Any:
    """The default `Runner`: the call, and a coroutine it returns run to its end."""
    return aio.resolve(call())


def accept(app: Forkq, message: Message) -> tuple[Message, Task]:
    """The task a decoded message names, and the message as the task will get it (a chord's
    body given its header's results); a message that cannot run is a `MessageRejected` with
    the reason."""
    task = app.tasks.get(message.task)
    if task is None:
        task = app.builtin_tasks.get(message.task)
        if task is None:
            raise MessageRejected(unknown_task(message.task, app.tasks), message.id)
    if message.expires is not None and message.expires < time.time():
        raise MessageRejected(f"expired at {readable_time(message.expires)}", message.id)
    flow = message.flow
    if flow is not None:
        if flow.failed is not None:  # it will not run: nothing to convert
            return message, task
        if flow.gather is not None:
            message = gathered(app, message)
    return convert_message(task, message), task


def unknown_task(name: str, known: Collection[str]) -> str:
    """The reason for a task this worker does not have: with some of the names it does have,
    so a worker started on the wrong module (or none) says so in every dead letter. A name
    longer than any task's is junk: it is quoted alone (and cut short by MessageRejected)."""
    if len(name) > UNKNOWN_TASK_CHARS:
        return f"unknown task {name!r}"
    if not known:
        return f"unknown task {name!r}: this worker has no tasks (see its start-up warning)"
    names = sorted(known)
    listed: list[str] = []
    length = 0
    for task in names[:UNKNOWN_TASK_NAMES]:
        length += len(task) + 2
        if listed and length > UNKNOWN_TASK_CHARS:
            break
        listed.append(task[:UNKNOWN_TASK_CHARS])
    more = f" and {len(names) - len(listed)} more" if len(listed) < len(names) else ""
    return f"unknown task {name!r}; this worker has {', '.join(listed)}{more}"


def execute(
    task: Task,
    message: Message,
    delivery_count: int = 1,
    *,
    within: Runner = to_the_end,
    passthrough: tuple[type[BaseException], ...] = (),
) -> ResultRecord:
    """Run the task on the message's arguments: its record. A task's exception is a FAILURE
    (or a RETRY, by `self.retry()` or `autoretry_for`), except `passthrough` ones, which are
    the caller's (a child told to stop). `within` makes the call (under the soft time limit,
    in a worker). A workflow's task sent only to fail (an upstream task failed) does not run:
    its record is that failure."""
    if message.flow is not None and message.flow.failed is not None:
        return not_run(message, message.flow.failed)
    previous = task.request
    task.request = Request(
        message.id, message.retries, message.queue, delivery_count, message.headers
    )
    started = time.perf_counter()
    try:
        value = within(partial(invoke, task, message))
    except passthrough:
        raise
    except BaseException as exc:
        return _outcome(task, exc, message)
    finally:
        task.request = previous
    took = time.perf_counter() - started
    log.info("task %s[%s] succeeded in %.4fs", message.task, message.id, took)
    return success_record(value, message.retries, message.task)


def _outcome(task: Task, exc: BaseException, message: Message) -> ResultRecord:
    """The record of what the task raised: the retry it asked for (`Retry`) or the one
    `autoretry_for` makes of it, else its failure. Working out a retry runs the task's
    options (`retry_kwargs`, back-off): an error there is the task's failure too, with `exc`
    as its context in the traceback, so that it never escapes into the child or the caller."""
    try:
        retry = exc if isinstance(exc, Retry) else task.autoretry(exc)
        if retry is not None:
            return _retry_record(retry, message)
    except Exception as broken:
        return _failure(broken, message)
    return _failure(exc, message)


def invoke(task: Task, message: Message) -> Any:
    """The call of the task's function itself: what it returns is the task's value."""
    return task(*message.args, **message.kwargs)


def next_try(message: Message, record: ResultRecord) -> Message:
    """The message of the try after a RETRY record, due when the record says; a delay that
    no engine can hold raises `ConfigurationError` (the task then fails: `refused_retry`)."""
    due = record.date_done or time.time()
    check_delay(due - time.time())
    return msgspec.structs.replace(message, retries=message.retries + 1, eta=due)


def refused_retry(message: Message, reason: Exception) -> ResultRecord:
    return failure_record("RetryRefused", str(reason), retries=message.retries)


def _retry_record(retry: Retry, message: Message) -> ResultRecord:
    cause = retry.exc
    log.info("task %s[%s] retry in %.2fs", message.task, message.id, retry.countdown)
    return ResultRecord(
        state=RETRY,
        exc_type=type(cause).__qualname__ if cause else None,
        exc_module=type(cause).__module__ if cause else None,
        exc_message=str(cause) if cause else None,
        retries=message.retries,
        date_done=time.time() + retry.countdown,  # when the next try is due
        name=message.task,
    )


def _failure(exc: BaseException, message: Message) -> ResultRecord:
    text = task_traceback(exc)
    kind, module = type(exc).__qualname__, type(exc).__module__
    log.error("task %s[%s] raised %s: %s\n%s", message.task, message.id, kind, exc, text.rstrip())
    return failure_record(
        kind, str(exc), text, message.retries, exc_module=module, name=message.task
    )


def task_traceback(exc: BaseException) -> str:
    """The exception's traceback from the task's own frames down: forkq's frames that called
    the task are left out (all of them kept when nothing else is left)."""
    return "".join(traceback.format_exception(type(exc), exc, _own_frames(exc.__traceback__)))


_RUNNERS = ("forkq", "asyncio")  # packages whose frames above the task's are the runner's


def _own_frames(tb: TracebackType | None) -> TracebackType | None:
    first = tb
    while first is not None and _is_runner(first) and first.tb_next is not None:
        first = first.tb_next
    return tb if first is None or _is_runner(first) else first


def _is_runner(tb: TracebackType) -> bool:
    module = str(tb.tb_frame.f_globals.get("__name__", ""))
    return module.partition(".")[0] in _RUNNERS
