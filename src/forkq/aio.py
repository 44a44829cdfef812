"""`async def` tasks and hooks: one event loop per process, one coroutine at a time.

    child (after fork) ── first coroutine ─► new loop ─► run_until_complete(task) ─► ...
                                              └── kept for the child's life, closed as it exits

A child runs coroutine tasks as it runs plain ones: one at a time, to the end, on a loop it
creates the first time it needs one and keeps until it exits, so that clients an async
after-fork hook opens are bound to the loop every later task runs on. The loop belongs to
the process that made it: a forked process never uses one it inherited (its selector and
wake-up pipe are shared with the parent), it makes its own. The master runs no coroutine and
so never has a loop.

The soft time limit of a coroutine is a timer on the loop that cancels it, so the task sees
`asyncio.CancelledError` at the `await` it is waiting in, and a task that lets it propagate
fails with `SoftTimeLimitExceeded`, as a plain task does. No signal is used: an exception
raised by a signal handler could land anywhere in the loop's own code and leave it broken.
A coroutine that blocks the loop (`time.sleep`, a long computation) sees its soft limit at
its next `await`; the hard limit, enforced by the master, stops it in any case.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any

from forkq.exceptions import SoftTimeLimitExceeded

log = logging.getLogger("forkq.worker")

# How long tasks a task left running get to finish their cancellation when the loop closes.
CLOSE_GRACE = 2.0


class _ProcessLoop:
    """This process's loop, and the process it belongs to."""

    loop: asyncio.AbstractEventLoop | None = None
    pid: int = -1


_current = _ProcessLoop()


def process_loop() -> asyncio.AbstractEventLoop:
    """The loop of this process, made on first use. One inherited through fork is left
    untouched: closing it could act on what it shares with its parent."""
    if _current.pid != os.getpid() or _current.loop is None or _current.loop.is_closed():
        _current.loop = asyncio.new_event_loop()
        _current.pid = os.getpid()
        # Outside a worker (a script, a test calling tasks eagerly) the loop closes as the
        # interpreter exits; worker processes leave through os._exit and close it before.
        atexit.unregister(close_process_loop)
        atexit.register(close_process_loop)
    return _current.loop


def close_process_loop() -> None:
    """Cancel what still runs on this process's loop and close it; before a child exits."""
    loop, _current.loop = _current.loop, None
    if loop is None or _current.pid != os.getpid() or loop.is_closed():
        return
    try:
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.wait(left, timeout=CLOSE_GRACE))
        loop.run_until_complete(loop.shutdown_asyncgens())
    except Exception:  # the process is leaving anyway: say why its clean-up failed, go on
        log.exception("closing the event loop failed")
    finally:
        loop.close()


def resolve(value: object, soft_limit: float | None = None, elapsed: float = 0.0) -> object:
    """What a task or hook gave back, with a coroutine run to its end on this process's
    loop (its value, or its exception raised here)."""
    if inspect.iscoroutine(value):
        return run_coroutine(value, soft_limit, elapsed)
    return value


def run_coroutine(
    coro: Coroutine[Any, Any, Any], soft_limit: float | None = None, elapsed: float = 0.0
) -> Any:
    """Run `coro` to its end on this process's loop. It is cancelled once `soft_limit`
    seconds have passed since the task began (`elapsed` of them already), which then raises
    `SoftTimeLimitExceeded` unless the coroutine handled its cancellation."""
    _refuse_inside_a_running_loop(coro)
    loop = process_loop()
    task = loop.create_task(coro)
    limit = timer = None
    if soft_limit:
        limit = _SoftLimit(task, soft_limit)
        timer = loop.call_later(max(soft_limit - elapsed, 0.0), limit.expire)
    try:
        return loop.run_until_complete(task)
    except asyncio.CancelledError as cancelled:
        if limit is not None and limit.expired:
            raise SoftTimeLimitExceeded(limit.reason) from cancelled
        raise
    finally:
        if timer is not None:
            timer.cancel()


class _SoftLimit:
    def __init__(self, task: asyncio.Task[Any], seconds: float) -> None:
        self.task = task
        self.reason = f"soft time limit ({seconds:g}s) exceeded"
        self.expired = False

    def expire(self) -> None:
        self.expired = True
        self.task.cancel(self.reason)


def _refuse_inside_a_running_loop(coro: Coroutine[Any, Any, Any]) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return  # the normal case: nothing runs a loop in this thread
    coro.close()  # not run: no "never awaited" warning on top of the error
    raise RuntimeError(
        f"cannot run {coro!r} to its end here: an event loop is already running in"
        " this thread (await the task's function directly instead: `await task(...)`)"
    )


def run_hook(hook: Callable[[], object]) -> None:
    """An after-fork hook, plain or `async def` (then on this process's loop)."""
    resolve(hook())
