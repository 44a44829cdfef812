"""How one call becomes a message: its sending options and the moments they name.

    apply_async(countdown, eta, expires, queue, priority, task_id, headers,
                unique_key, unique_for)                                     ─► CallOptions
    send_task, new_message (the same)                                       ─► CallOptions
    delay() (apply_async with no option), map(): the task's own CallOptions (expires, queue,
        priority), built once per value of `task.options`

    CallOptions.message(task, args, kwargs, the app's default queue) ─► Message

Times in a message are Unix timestamps: `eta` (or `countdown` seconds from now) becomes the
moment the message is due, `expires` as a number is seconds from now.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgspec

from forkq.envelope import Message, Unique, make_message
from forkq.exceptions import ConfigurationError


class CallOptions(msgspec.Struct, frozen=True, kw_only=True):
    """The options of one call: those of `apply_async` and `send_task`."""

    countdown: float | None = None  # seconds from now before it runs
    eta: datetime | float | None = None  # the moment it runs: an aware datetime or Unix time
    expires: datetime | float | None = None  # a moment, or seconds from now, not to run after
    queue: str | None = None  # None: the app's default queue
    priority: int = 0
    task_id: str | None = None  # None: a new one
    headers: dict[str, str] | None = None
    unique_key: str | None = None  # a unique task's lock (None: from the task and arguments)
    unique_for: float | None = None  # seconds the lock lasts at most (None: the task's)

    def message(
        self,
        task: str,
        args: Iterable[Any],
        kwargs: dict[str, Any],
        queue: str,
        unique: Unique | None = None,
    ) -> Message:
        """The message of a call of `task` with these options; `queue` where they name none."""
        expires = self.expires
        if isinstance(expires, (int, float)):
            expires = time.time() + expires
        due = None
        if self.eta is not None or self.countdown is not None:
            due = time.time() + due_delay(self.countdown, self.eta)
        return make_message(
            task,
            args,
            kwargs,
            queue=self.queue or queue,
            task_id=self.task_id,
            eta=due,
            expires=to_timestamp(expires),
            priority=self.priority,
            headers=self.headers,
            unique=unique,
        )


def to_timestamp(moment: datetime | float | None) -> float | None:
    if moment is None or isinstance(moment, (int, float)):
        return moment
    if moment.tzinfo is None:
        raise ConfigurationError("eta/expires datetimes must be timezone-aware")
    return moment.timestamp()


def due_delay(countdown: float | None, eta: datetime | float | None) -> float:
    if countdown is not None and eta is not None:
        raise ConfigurationError("give countdown or eta, not both")
    if countdown is not None:
        return max(0.0, float(countdown))
    at = to_timestamp(eta)
    return 0.0 if at is None else max(0.0, at - time.time())
