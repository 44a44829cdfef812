"""Over time: how many tasks succeeded and failed in each `step`-second bucket of the last
`span` seconds (`OutcomeSeries`), and each worker's memory sums heartbeat by heartbeat
(`MemorySeries`). Pure: events go in, the time is given when the buckets are read.
"""

from __future__ import annotations

import math
from collections import Counter, deque

import msgspec

from forkq.events.values import TaskEvent, TaskEventKind, WorkerEvent, WorkerEventKind

STEP = 10.0  # seconds a bucket covers
SPAN = 600.0  # seconds the series covers: the last ten minutes
COUNTED = (TaskEventKind.SUCCEEDED, TaskEventKind.FAILED)


class Buckets(msgspec.Struct, frozen=True):
    """Counts per bucket, oldest first; `start` is the first bucket's start (Unix time)."""

    start: float
    step: float
    succeeded: list[int]
    failed: list[int]


class OutcomeSeries:
    """Counts by (bucket number, kind); buckets older than the span are dropped as new ones
    come, so it holds at most span / step of each kind."""

    def __init__(self, step: float = STEP, span: float = SPAN) -> None:
        self.step, self.span = step, span
        self._counts: Counter[tuple[int, TaskEventKind]] = Counter()
        self._newest = -math.inf

    def fold(self, event: TaskEvent) -> None:
        if event.kind not in COUNTED:
            return
        bucket = int(event.at // self.step)
        self._counts[bucket, event.kind] += 1
        if bucket > self._newest:
            self._newest = bucket
            self._forget_before(bucket - self._buckets())

    def read(self, now: float) -> Buckets:
        last = int(now // self.step)
        first = last - self._buckets() + 1
        numbers = range(first, last + 1)
        return Buckets(
            first * self.step,
            self.step,
            [self._counts.get((n, TaskEventKind.SUCCEEDED), 0) for n in numbers],
            [self._counts.get((n, TaskEventKind.FAILED), 0) for n in numbers],
        )

    def _buckets(self) -> int:
        return max(1, int(self.span // self.step))

    def _forget_before(self, bucket: int) -> None:
        for key in [key for key in self._counts if key[0] < bucket]:
            del self._counts[key]


MEMORY_POINTS = 120  # heartbeats kept per worker: 20 minutes at the default 10 s tick


class MemoryPoint(msgspec.Struct, frozen=True):
    """One heartbeat's sums over a worker's processes (master and children), in bytes."""

    at: float
    rss: int
    pss: int
    uss: int


class MemorySeries:
    """Each worker's memory sums from its last `points` heartbeats, oldest first: RSS against
    PSS over time shows what fork saves, and children's pages turning private."""

    def __init__(self, points: int = MEMORY_POINTS) -> None:
        self.points = points
        self._workers: dict[str, deque[MemoryPoint]] = {}

    def fold(self, event: WorkerEvent) -> None:
        if event.kind is not WorkerEventKind.HEARTBEAT:
            return
        rows = event.children
        point = MemoryPoint(
            event.at,
            event.master_rss + sum(c.rss for c in rows),
            event.master_pss + sum(c.pss for c in rows),
            event.master_uss + sum(c.uss for c in rows),
        )
        kept = self._workers.setdefault(event.worker, deque(maxlen=self.points))
        kept.append(point)

    def of(self, worker: str) -> list[MemoryPoint]:
        return list(self._workers.get(worker, ()))
