"""Per-task time limits, inside a child.

The soft limit is an interval timer whose SIGALRM raises `SoftTimeLimitExceeded` in the task,
which may catch it to clean up. A coroutine (an `async def` task) is cancelled by a timer on
its event loop instead (forkq/aio.py): no signal may raise inside the loop's own code.

The hard limit is not enforced here: the child writes the deadline into its scoreboard slot
and the master kills the child when it passes, because a task stuck in C code or ignoring
exceptions cannot be stopped from inside.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import msgspec

from forkq import aio
from forkq.exceptions import ConfigurationError, SoftTimeLimitExceeded
from forkq.task import Task


class TimeLimits(msgspec.Struct, frozen=True):
    """Worker-wide defaults; a task's own options win."""

    hard: float | None = None
    soft: float | None = None

    def __post_init__(self) -> None:
        for name, value in (("hard", self.hard), ("soft", self.soft)):
            if value is not None and value <= 0:
                raise ConfigurationError(f"{name} time limit must be > 0 seconds, got {value}")

    def for_task(self, task: Task) -> TimeLimits:
        return TimeLimits(
            task.options.time_limit or self.hard, task.options.soft_time_limit or self.soft
        )


@contextmanager
def soft_time_limit(seconds: float | None) -> Iterator[None]:
    if not seconds:
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise SoftTimeLimitExceeded(f"soft time limit ({seconds:g}s) exceeded")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def call_within_soft_limit(call: Callable[[], object], seconds: float | None) -> object:
    """`call()` under the soft limit: the signal while plain code runs, then, if it gave a
    coroutine, the loop's timer for what is left of the limit while that runs."""
    if not seconds:  # most tasks: no signal to arm, no time to keep
        return aio.resolve(call())
    started = time.monotonic()
    with soft_time_limit(seconds):
        value = call()
    return aio.resolve(value, seconds, time.monotonic() - started)
