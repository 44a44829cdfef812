"""Task events (`forkq worker -E`): a child's observer that records what happened to each task
in a bounded buffer, and the buffer's flush, one `add_events` per batch, that the consume
loop does between tasks.

    executor ─► Observers.received/started/finished/rejected ─► TaskEvents ─► EventBuffer
                  (one encoded TaskEvent each; over BOUND buffered: dropped and counted)
    consume loop, before and after each task ─► EventBuffer.flush_if_due: BATCH events, or
                  the oldest older than MAX_AGE ─► ResultBackend.add_events (one round trip)
                ─► with events held, a fetch waits at most until the oldest is IDLE_AGE old,
                   then EventBuffer.flush: an idle child holds none for longer
                ─► leaving: EventBuffer.flush(final=True)

A flush that fails (the store unreachable, or slow past its timeout) drops its batch, counts
it, and the buffer tries no flush again for a back-off of BACKOFF_MIN to BACKOFF_MAX seconds,
and at least STALLED times as long as the failed attempt took: a store that refuses costs an
attempt per few seconds, one that stalls until the client's timeout (5 s on Redis) at most
1/STALLED of the child's time, and a task never waits for room. A flush that worked but took
longer than SLOW backs off the same way, its next events held meanwhile (within the bound): a
store that answers slowly costs at most 1/STALLED of the child's time too. The last flush
(`flush(final=True)`, when the process leaves) ignores no failure: what it cannot send, or
what is held during a back-off, is dropped and counted, never silently lost. The drops are
counted where the metrics count them (`forkq_events_dropped_total`) and logged once per
outage. The
master's buffer is the same class, flushed on its tick (worker_events.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from forkq.engines.contract import ResultBackend
from forkq.engines.registry import open_backend
from forkq.envelope import Message
from forkq.events import Event, TaskEvent, TaskEventKind, encode
from forkq.events.calls import call_text
from forkq.events.workflow import NONE, Membership, membership
from forkq.exceptions import BackendError
from forkq.outage import Outage
from forkq.settings import Settings
from forkq.states import FAILURE, RETRY, REVOKED, SUCCESS
from forkq.worker.observe import Rejected

log = logging.getLogger("forkq.worker")

BOUND = 10_000  # events held at most; beyond, each new one is dropped and counted
BATCH = 100  # a flush is due once this many are held
MAX_AGE = 1.0  # or once the oldest held is this old (seconds)
IDLE_AGE = 0.2  # an idle child waits for work at most this long before it flushes
BACKOFF_MIN, BACKOFF_MAX = 1.0, 5.0  # seconds without a flush after one failed
STALLED = 20  # and at least this many times as long as the failed attempt took
SLOW = 0.05  # seconds: a flush that worked but took longer backs off too
REASON_MAX = 200  # characters of an exception's line kept in an event

# A finished task's recorded state to its event's kind.
KIND_OF_STATE = {
    SUCCESS: TaskEventKind.SUCCEEDED,
    FAILURE: TaskEventKind.FAILED,
    RETRY: TaskEventKind.RETRIED,
    REVOKED: TaskEventKind.REVOKED,
}


class EventStore(Protocol):
    """Where a buffer's events go: every result backend is one (engines/contract/events.py)."""

    def add_events(self, bodies: Sequence[bytes], kept: int) -> None: ...


def no_count(_dropped: int) -> None:
    """Where drops go when no metrics are served: they are still logged."""


class EventBuffer:
    """Encoded events waiting for their flush, at most `bound`; a flush sends them all in one
    `add_events` on `store`, keeping at most `kept` there. `dropped(n)` hears of every event
    dropped (full buffer, failed flush)."""

    def __init__(
        self,
        store: EventStore,
        kept: int,
        dropped: Callable[[int], None] = no_count,
        *,
        bound: int = BOUND,
        batch: int = BATCH,
        max_age: float = MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
        release: Callable[[], None] | None = None,  # closes the store when it is our own
    ) -> None:
        self.store, self.kept, self._dropped = store, kept, dropped
        self._release = release
        self.bound, self.batch, self.max_age, self.clock = bound, batch, max_age, clock
        self.bodies: list[bytes] = []
        self.dropped_total = 0  # in this process, since it started
        self._oldest = 0.0  # when the oldest held was added
        self._not_before = 0.0  # no flush before this (a back-off after a failure)
        self._outage = Outage("events store", log)

    def add(self, event: Event) -> None:
        if len(self.bodies) >= self.bound:
            self._drop(1)
            return
        if not self.bodies:
            self._oldest = self.clock()
        self.bodies.append(encode(event))

    def idle_wait(self) -> float:
        """How long a fetch may wait for work before the events held should go: until the
        oldest is IDLE_AGE old (0: now)."""
        return max(0.0, self._oldest + IDLE_AGE - self.clock())

    def flush_if_due(self) -> None:
        """Flush when a batch is held, or the oldest held has waited long enough."""
        if len(self.bodies) >= self.batch or (
            self.bodies and self.clock() - self._oldest >= self.max_age
        ):
            self.flush()

    def flush(self, final: bool = False) -> None:
        """Everything held, in one `add_events`; unless backing off after a failed or slow
        flush (then it stays held, within the bound, for the flush after the back-off).
        `final`: the process leaves, so what cannot go now is dropped and counted."""
        if not self.bodies:
            return
        if self.clock() < self._not_before:
            if final:
                self._drop(len(self.bodies))
                self.bodies = []
            return
        bodies, self.bodies = self.bodies, []
        began = self.clock()
        try:
            self.store.add_events(bodies, self.kept)
        except (BackendError, OSError) as exc:  # a store that answers late fails the same way
            now = self.clock()
            wait = min(BACKOFF_MAX, max(BACKOFF_MIN, self._outage.failed(exc)))
            self._not_before = now + max(wait, STALLED * (now - began))
            self._drop(len(bodies))
        else:
            self._outage.succeeded()
            took = self.clock() - began
            if took > SLOW:
                self._not_before = began + took + STALLED * took

    def close(self) -> None:
        """The process leaves: the last flush, then the store closed if it is this buffer's
        own connection (`events_url`)."""
        self.flush(final=True)
        if self._release is not None:
            self._release()
            self._release = None

    def _drop(self, count: int) -> None:
        self.dropped_total += count
        self._dropped(count)


def child_buffer(
    settings: Settings, results: ResultBackend, dropped: Callable[[int], None]
) -> EventBuffer:
    """A child's buffer: flushed to its own result backend's connection (`results`), or to
    a connection of its own to `events_url` when events are kept elsewhere."""
    if settings.events_url is None:
        return EventBuffer(results, settings.events_kept, dropped)
    own = open_backend(settings.events_url)
    return EventBuffer(own, settings.events_kept, dropped, release=own.close)


class TaskEvents:
    """A child's observer (worker/observe.py): one event per thing that happened to a task,
    into the buffer; never raises on the task's path, never sends there."""

    def __init__(self, buffer: EventBuffer, worker: str, child: int) -> None:
        self.buffer, self.worker, self.child = buffer, worker, child

    def _add(
        self,
        kind: TaskEventKind,
        message: Message,
        queue: str,
        runtime: float | None = None,
        reason: str = "",
        at: float | None = None,
        args: str = "",
        member: Membership = NONE,
    ) -> None:
        self.buffer.add(
            TaskEvent(
                kind,
                message.id,
                message.task,
                queue,
                time.time() if at is None else at,
                self.worker,
                self.child,
                runtime,
                reason[:REASON_MAX],
                args,
                member.group,
                member.group_size,
                member.group_body,
            )
        )

    def received(self, message: Message, queue: str) -> None:
        """With the call's arguments as short text (events/calls.py), as Celery's
        task-received carries them."""
        args, member = call_text(message.args, message.kwargs), membership(message.flow)
        self._add(TaskEventKind.RECEIVED, message, queue, args=args, member=member)

    def started(self, message: Message, queue: str) -> None:
        self._add(TaskEventKind.STARTED, message, queue)

    def finished(
        self, message: Message, queue: str, state: str, runtime: float, reason: str, at: float
    ) -> None:
        kind = KIND_OF_STATE.get(state)
        if kind is None:
            return
        ran = kind is not TaskEventKind.REVOKED
        self._add(kind, message, queue, runtime if ran else None, reason, at)

    def rejected(self, rejection: Rejected) -> None:
        self.buffer.add(
            TaskEvent(
                TaskEventKind.REJECTED,
                rejection.task_id,
                rejection.task_name,
                rejection.queue,
                time.time(),
                self.worker,
                self.child,
                reason=rejection.reason[:REASON_MAX],
            )
        )
