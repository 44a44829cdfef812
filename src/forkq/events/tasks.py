"""The tasks the task events tell of, by id: each one's latest state and its timeline. Pure,
like `EventsState`: events go in (`fold`), the index is read.

Bounded: at most `capacity` tasks, the one whose newest event is oldest dropped first; each
task keeps at most `TIMELINE` events (its first and newest ones), so a task retried a thousand
times costs as much as one retried a few. Filtering walks the tasks newest first and stops at
`limit` matches, so a page costs the matches it shows plus the tasks it passed over.

Pages beyond the newest go by a cursor, a task's `seq`: the number of the fold that last
moved it to the newest end. A page `before=n` holds the tasks moved there before fold n, so
new tasks do not push its rows away; a task with news leaves it for the newer pages.
"""

from __future__ import annotations

from collections import OrderedDict, deque
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
    seq: int = 0  # the fold that last made it the newest: its place in the order


class TaskPage(msgspec.Struct, frozen=True):
    """Up to a limit of matching tasks, newest first, and the cursors next to them: `older`
    for `page(before=older)`, `newer` for `page(after=newer)`; None when no match lies
    that way."""

    tasks: list[TaskView]
    older: int | None = None
    newer: int | None = None


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
        self._folds = 0

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
        self._folds += 1
        task.seq = self._folds
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

    def page(
        self, chosen: TaskFilter, limit: int, before: int | None = None, after: int | None = None
    ) -> TaskPage:
        """Up to `limit` tasks `chosen` matches, newest first: the newest ones; with
        `before`, the newest of those older than that cursor; with `after`, the oldest of
        those newer than it."""
        if after is not None:
            return self._after(chosen, limit, after)
        skipped, found = False, []
        for task in self._matching(chosen):
            if before is not None and task.seq >= before:
                skipped = True
                continue
            found.append(task)
            if len(found) > limit:
                break
        shown = found[:limit]
        older = shown[-1].seq if len(found) > limit else None
        newer = None
        if skipped and before is not None:
            newer = shown[0].seq if shown else before - 1
        return TaskPage(shown, older, newer)

    def _after(self, chosen: TaskFilter, limit: int, after: int) -> TaskPage:
        kept: deque[TaskView] = deque(maxlen=limit + 1)  # the oldest of those walked
        more_older = False
        for task in self._matching(chosen):
            if task.seq <= after:
                more_older = True
                break
            kept.append(task)
        shown = list(kept)[-limit:]
        newer = shown[0].seq if len(kept) > limit else None
        older = None
        if more_older:
            older = shown[-1].seq if shown else after + 1
        return TaskPage(shown, older, newer)

    def _matching(self, chosen: TaskFilter) -> Iterator[TaskView]:
        return (task for task in self._newest_first() if chosen.matches(task))

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
