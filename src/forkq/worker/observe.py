"""What a child tells its observers about each delivery it handles: the one place the executor
reports outcomes, for whoever counts or records them (metrics, events).

    Executor ─► received(message, queue)           its message decoded and accepted
             ─► started(message, queue)            the task is about to run
             ─► finished(message, queue, state, runtime, reason, at)  it ran: SUCCESS,
                                                    FAILURE, RETRY (or it was revoked: REVOKED,
                                                    runtime 0); reason: the exception's line of
                                                    a failure or retry, "" for a success; at:
                                                    when it ended (Unix time), before its
                                                    result and effects were sent
             ─► rejected(rejection)                 dead-lettered without running

An observer must not block or raise: it is called on the task's path, in the child. What it
sends anywhere it buffers, and a failure to send is its own to count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec

from forkq.envelope import Message


class Rejected(msgspec.Struct, frozen=True):
    """A delivery dead-lettered without running: its task's id and name when they could be
    read (empty otherwise), its queue and why."""

    task_id: str
    task_name: str
    queue: str
    reason: str


class TaskObserver(Protocol):
    def received(self, message: Message, queue: str) -> None: ...

    def started(self, message: Message, queue: str) -> None: ...

    def finished(
        self, message: Message, queue: str, state: str, runtime: float, reason: str, at: float
    ) -> None: ...

    def rejected(self, rejection: Rejected) -> None: ...


class Observers:
    """Every observer of one child, called in order."""

    def __init__(self, observers: Sequence[TaskObserver] = ()) -> None:
        self._all = tuple(observers)

    def __bool__(self) -> bool:
        return bool(self._all)

    def received(self, message: Message, queue: str) -> None:
        for o in self._all:
            o.received(message, queue)

    def started(self, message: Message, queue: str) -> None:
        for o in self._all:
            o.started(message, queue)

    def finished(
        self, message: Message, queue: str, state: str, runtime: float, reason: str, at: float
    ) -> None:
        for o in self._all:
            o.finished(message, queue, state, runtime, reason, at)

    def rejected(self, rejection: Rejected) -> None:
        for o in self._all:
            o.rejected(rejection)
