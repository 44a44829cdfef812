"""Per queue, messages in and out over time, in `step`-second buckets of the last `span`
seconds. Pure: events go in, the time is given when the buckets are read.

    in:  `sent` events, where the queue's clients send them (setting events_sent); else
         `received` ones (a child fetched the message: it came in no later than that)
    out: a run's end (succeeded, failed, retried: the retry comes in again), a revoked
         message and a rejected one (dead-lettered)
"""

from __future__ import annotations

import enum
import math
from collections import Counter

import msgspec

from forkq.events.values import TaskEvent, TaskEventKind

STEP = 10.0  # seconds a bucket covers
SPAN = 600.0  # seconds the series covers: the last ten minutes
RATE_WINDOW = 60.0  # seconds the rates per second are averaged over
QUEUES_KEPT = 1_000  # queues counted, the one whose newest event is oldest forgotten first
OUT = frozenset(
    {
        TaskEventKind.SUCCEEDED,
        TaskEventKind.FAILED,
        TaskEventKind.RETRIED,
        TaskEventKind.REVOKED,
        TaskEventKind.REJECTED,
    }
)


class Way(enum.Enum):
    """What a bucket counts."""

    SENT = "sent"
    RECEIVED = "received"
    OUT = "out"


def way_of(kind: TaskEventKind) -> Way | None:
    if kind is TaskEventKind.SENT:
        return Way.SENT
    if kind is TaskEventKind.RECEIVED:
        return Way.RECEIVED
    return Way.OUT if kind in OUT else None


class QueueFlow(msgspec.Struct, frozen=True):
    """One queue's counts per bucket, oldest first, and its rates over the last minute."""

    queue: str
    step: float
    counted_in: Way  # SENT or RECEIVED: what `came_in` counts
    came_in: list[int]
    went_out: list[int]
    in_per_second: float
    out_per_second: float


class QueueRates:
    """Counts by (queue, bucket, kind); a queue's buckets older than the span are dropped as
    its new ones come, so each queue holds at most span / step of each kind."""

    def __init__(self, step: float = STEP, span: float = SPAN) -> None:
        self.step, self.span = step, span
        self._counts: dict[str, Counter[tuple[int, Way]]] = {}
        self._newest: dict[str, int] = {}
        self._sent: set[str] = set()  # queues whose clients send `sent` events

    def fold(self, event: TaskEvent) -> None:
        way = way_of(event.kind)
        if way is None:
            return
        if way is Way.SENT:
            self._sent.add(event.queue)
        bucket = int(event.at // self.step)
        if event.queue not in self._counts and len(self._counts) >= QUEUES_KEPT:
            self._forget(min(self._newest, key=self._newest.__getitem__))
        counts = self._counts.setdefault(event.queue, Counter())
        counts[bucket, way] += 1
        if bucket > self._newest.get(event.queue, -math.inf):
            self._newest[event.queue] = bucket
            for key in [key for key in counts if key[0] <= bucket - self._buckets()]:
                del counts[key]

    def _forget(self, queue: str) -> None:
        del self._counts[queue], self._newest[queue]
        self._sent.discard(queue)

    @property
    def queues(self) -> list[str]:
        return sorted(self._counts)

    def read(self, queue: str, now: float) -> QueueFlow:
        last = int(now // self.step)
        numbers = range(last - self._buckets() + 1, last + 1)
        counts = self._counts.get(queue, Counter())
        for key in [key for key in counts if not numbers.start <= key[0] <= last]:
            del counts[key]  # gone past, or dated ahead of now (a skewed clock): not counted
        if queue in self._newest:
            self._newest[queue] = min(self._newest[queue], last)
        came = Way.SENT if queue in self._sent else Way.RECEIVED
        came_in = [counts.get((n, came), 0) for n in numbers]
        went_out = [counts.get((n, Way.OUT), 0) for n in numbers]
        recent = max(1, int(RATE_WINDOW // self.step))
        window = (recent - 1) * self.step + (now - last * self.step)  # the newest is filling
        return QueueFlow(
            queue,
            self.step,
            came,
            came_in,
            went_out,
            sum(came_in[-recent:]) / window,
            sum(went_out[-recent:]) / window,
        )

    def _buckets(self) -> int:
        return max(1, int(self.span // self.step))
