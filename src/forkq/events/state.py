"""What a stream of events adds up to: the workers (each with its children as its latest
heartbeat showed them, and its master's memory) and the newest task events. Pure: events go
in (`fold`), the state is read; the time is given, never read. `forkq events` draws it, and a
dashboard can.

A worker is online from its first event until its offline event; lost when nothing came from
it for `LOST_AFTER_BEATS` heartbeat intervals (the interval measured between its last two
heartbeats, `HEARTBEAT_GUESS` until two came).
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from collections.abc import Iterable

import msgspec

from forkq.events.codec import decode
from forkq.events.values import (
    ChildRow,
    Event,
    TaskEvent,
    TaskEventKind,
    WorkerEvent,
    WorkerEventKind,
)

LOST_AFTER_BEATS = 3
HEARTBEAT_GUESS = 10.0  # seconds: a worker's tick (lease_ttl / 3) with the default lease
RECENT_TASKS = 50  # task events kept by default


class WorkerStatus(enum.Enum):
    ONLINE = "online"
    OFFLINE = "offline"
    LOST = "lost"


class WorkerView(msgspec.Struct):
    """One worker as its events tell it."""

    worker: str
    host: str
    pid: int
    queues: tuple[str, ...] = ()
    concurrency: int = 0
    last_seen: float = 0.0  # its newest event's time
    last_heartbeat: float | None = None
    interval: float | None = None  # between its last two heartbeats
    offline: bool = False
    children: tuple[ChildRow, ...] = ()  # as its latest heartbeat gave them
    master_rss: int = 0
    master_pss: int = 0
    master_uss: int = 0

    def status(self, now: float) -> WorkerStatus:
        if self.offline:
            return WorkerStatus.OFFLINE
        beat = self.interval or HEARTBEAT_GUESS
        if now - self.last_seen > LOST_AFTER_BEATS * beat:
            return WorkerStatus.LOST
        return WorkerStatus.ONLINE


class EventsState:
    """The workers (by id) and the newest `recent` task events, oldest first; `skipped`
    counts the bodies that were not events of this version."""

    def __init__(self, recent: int = RECENT_TASKS) -> None:
        self.workers: dict[str, WorkerView] = {}
        self.tasks: deque[TaskEvent] = deque(maxlen=recent)
        self.task_counts: Counter[TaskEventKind] = Counter()
        self.skipped = 0

    def fold_bodies(self, bodies: Iterable[bytes]) -> None:
        """Each body decoded and folded; one that is not an event counted in `skipped`."""
        for body in bodies:
            event = decode(body)
            if event is None:
                self.skipped += 1
            else:
                self.fold(event)

    def fold(self, event: Event) -> None:
        if isinstance(event, TaskEvent):
            self._task(event)
        else:
            self._worker(event)

    def sorted_workers(self) -> list[WorkerView]:
        """By host, then worker id."""
        return sorted(self.workers.values(), key=lambda w: (w.host, w.worker))

    def _task(self, event: TaskEvent) -> None:
        self.tasks.append(event)
        self.task_counts[event.kind] += 1
        seen = self.workers.get(event.worker)
        if seen is not None and event.at > seen.last_seen:
            seen.last_seen = event.at

    def _worker(self, event: WorkerEvent) -> None:
        view = self.workers.get(event.worker)
        if view is None or event.kind is WorkerEventKind.ONLINE:
            view = self.workers[event.worker] = WorkerView(event.worker, event.host, event.pid)
        view.host, view.pid = event.host, event.pid
        view.queues, view.concurrency = event.queues, event.concurrency
        view.last_seen = max(view.last_seen, event.at)
        view.offline = event.kind is WorkerEventKind.OFFLINE
        if event.kind is WorkerEventKind.HEARTBEAT:
            if view.last_heartbeat is not None and event.at > view.last_heartbeat:
                view.interval = event.at - view.last_heartbeat
            view.last_heartbeat = event.at
            view.children = event.children
            view.master_rss, view.master_pss = event.master_rss, event.master_pss
            view.master_uss = event.master_uss
        elif view.offline:
            view.children = ()
