"""Task outcomes over time: how many tasks succeeded and failed in each `step`-second bucket
of the last `span` seconds. Pure: events go in, the time is given when the buckets are read.
"""

from __future__ import annotations

import math
from collections import Counter

import msgspec

from forkq.events.values import TaskEvent, TaskEventKind

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
