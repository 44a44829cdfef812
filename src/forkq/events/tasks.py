"""The tasks the task events tell of, by id: each one's latest state and its timeline. Pure,
like `EventsState`: events go in (`fold`), the index is read.

Bounded: at most `capacity` tasks, the one whose newest event is oldest dropped first; each
task keeps at most `TIMELINE` events (its first and newest ones), so a task retried a thousand
times costs as much as one retried a few. Filtering walks the tasks newest first and stops at
`limit` matches, so a page costs the matches it shows plus the tasks it passed over.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import msgspec

from forkq.events.values import TaskEvent, TaskEventKind

CAPACITY = 100_000  # tasks kept: the default events_kept holds no more task events than this
TIMELINE = 32  # events kept per task


class TaskView(msgspec.Struct):
    """One task as its events tell it; `state` is its newest event's kind."""

    task_id: str
    name: str
    queue: str
    state: TaskEventKind
    first_at: float
    last_at: float
    worker: str = ""
    child: int = -1
    runtime: float | None = None
    reason: str = ""
    args: str = ""
    timeline: list[TaskEvent] = msgspec.field(default_factory=list)


class TaskFilter(msgspec.Struct, frozen=True):
    """What a task list shows: every field empty matches all; `workers` are worker ids (any
    of them); `search` is a task id prefix."""

    state: TaskEventKind | None = None
    name: str = ""
    queue: str = ""
    workers: frozenset[str] = frozenset()
    search: str = ""

    def matches(self, task: TaskView) -> bool:
        return (
            (self.state is None or task.state is self.state)
            and (not self.name or task.name == self.name)
            and (not self.queue or task.queue == self.queue)
            and (not self.workers or task.worker in self.workers)
            and task.task_id.startswith(self.search)
        )


class TaskIndex:
    """Tasks by id, in the order of their newest event (the newest last)."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._tasks: OrderedDict[str, TaskView] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tasks)

    def get(self, task_id: str) -> TaskView | None:
        return self._tasks.get(task_id)

    def fold(self, event: TaskEvent) -> None:
        task = self._tasks.get(event.task_id)
        if task is None:
            task = TaskView(event.task_id, event.name, event.queue, event.kind, event.at, event.at)
            self._tasks[event.task_id] = task
            if len(self._tasks) > self.capacity:
                self._tasks.popitem(last=False)
        else:
            self._tasks.move_to_end(event.task_id)
        _apply(task, event)

    def newest(self, chosen: TaskFilter, limit: int) -> list[TaskView]:
        """Up to `limit` tasks `chosen` matches, newest first."""
        found: list[TaskView] = []
        for task in self._newest_first():
            if chosen.matches(task):
                found.append(task)
                if len(found) == limit:
                    break
        return found

    def _newest_first(self) -> Iterator[TaskView]:
        return reversed(self._tasks.values())


def _apply(task: TaskView, event: TaskEvent) -> None:
    """The event's news: a later event sets the state; an earlier one (events of one task
    come from several processes) only joins the timeline."""
    if event.at >= task.last_at:
        task.state, task.last_at = event.kind, event.at
    task.first_at = min(task.first_at, event.at)
    task.name = task.name or event.name
    if event.worker:
        task.worker, task.child = event.worker, event.child
    if event.runtime is not None:
        task.runtime = event.runtime
    task.reason = event.reason or task.reason
    task.args = event.args or task.args
    task.timeline.append(event)
    task.timeline.sort(key=lambda e: e.at)
    if len(task.timeline) > TIMELINE:
        del task.timeline[TIMELINE // 2]  # the first events and the newest stay
