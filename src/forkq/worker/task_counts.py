"""Tasks counted by name and outcome, with their runtimes, in the tally (pool/tally.py): each
child counts what it handles in its own area, through the executor's observer seam, and the
master sums the areas on a scrape. No message, no round trip: two stores per task.

    executor ─► Observers.finished(message, queue, state, ...) ─► TaskCounter
                   row of message.task ("other" if not registered at fork), block of its
                   outcome: block[bucket(runtime)] += 1; block[sum] += runtime
             ─► Observers.rejected(rejection) ─► row[rejected] += 1

The words of one area (`TaskLayout`)::

    Word (the worker's own counters: events dropped, messages released, buried by the master)
    then one row per task name: the app's tasks and built-in tasks, sorted, then "other"
        for each outcome of a task that ran (succeeded, failed, retried): its runtime
            histogram, one count per bucket of BUCKETS and one for the rest (+Inf), not
            cumulative, then its runtime sum in seconds
        then one count for each outcome of a task that did not run (revoked, rejected, lost)

A task that ran is counted once, in its outcome's histogram: the outcome's count is the sum
of its buckets, and the task's histogram the sum of its outcomes' (`TaskFigures`), so the child
writes two words per task, not three.

The names are those registered when the master forks, so every child lays out its area alike;
a task unknown then (registered later, or a message for a task this worker lacks) counts in
"other". `lost` and the master's `failed` (a task killed for its time limit, which ran from the
start its slot shows until the kill) are counted by the master when it reaps the child
(`worker/metrics.py`), in the same words.
"""

from __future__ import annotations

import enum
from bisect import bisect_left
from collections.abc import Iterable

from forkq.envelope import Message
from forkq.states import FAILURE, RETRY, REVOKED, SUCCESS
from forkq.worker.observe import Rejected

# Seconds; forkq tasks run from a hundred microseconds to hours.
BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
)  # fmt: skip
OTHER = "other"


class Word(enum.IntEnum):
    """The worker's own counters, at the head of every area."""

    EVENTS_DROPPED = 0  # events not sent because their buffer was full (the events' writer)
    RELEASED = 1  # messages the master put back when their child died (master only)
    BURIED = 2  # messages the master dead-lettered: their task killed for its time limit


class Outcome(enum.IntEnum):
    """A task's outcome, the `state` label of forkq_tasks_total."""

    SUCCEEDED = 0
    FAILED = 1
    RETRIED = 2
    REVOKED = 3
    REJECTED = 4  # dead-lettered without running
    LOST = 5  # its process died while running it (master): it runs again


RAN = (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.RETRIED)  # each with a histogram
# A finished task's recorded state to its outcome: the one place states become outcomes.
OUTCOME_OF_STATE = {
    SUCCESS: Outcome.SUCCEEDED,
    FAILURE: Outcome.FAILED,
    RETRY: Outcome.RETRIED,
    REVOKED: Outcome.REVOKED,
}
_BUCKETS = len(BUCKETS) + 1  # with +Inf
_SUM = _BUCKETS  # in a ran outcome's block, after its buckets
_BLOCK = _BUCKETS + 1
ROW = len(RAN) * _BLOCK + len(Outcome) - len(RAN)


def at(outcome: Outcome) -> int:
    """Where an outcome's block (ran) or count (did not run) starts in a row."""
    if outcome in RAN:
        return RAN.index(outcome) * _BLOCK
    return len(RAN) * _BLOCK + outcome - len(RAN)


# As plain ints, for the child's path: an enum member's lookup costs more than the store.
_AT_OF_STATE = {state: at(outcome) for state, outcome in OUTCOME_OF_STATE.items()}
_REVOKED, _REJECTED = at(Outcome.REVOKED), at(Outcome.REJECTED)
_EVENTS_DROPPED = int(Word.EVENTS_DROPPED)


class TaskLayout:
    """Where each task's row starts in an area; made before the fork, the same in every
    child and in the master."""

    def __init__(self, names: Iterable[str]) -> None:
        registered = sorted(set(names) - {OTHER})
        self.names = (*registered, OTHER)  # in row order
        self.rows = {name: len(Word) + i * ROW for i, name in enumerate(self.names)}
        self.other = self.rows[OTHER]
        self.width = len(Word) + len(self.names) * ROW

    def row(self, task: str) -> int:
        return self.rows.get(task, self.other)

    def ran(self, task: str, outcome: Outcome, runtime: float) -> tuple[int, int]:
        """The words a task that ran adds to: its bucket (one more) and its sum (runtime)."""
        block = self.row(task) + at(outcome)
        return block + bisect_left(BUCKETS, runtime), block + _SUM

    def count(self, task: str, outcome: Outcome) -> int:
        """The word of an outcome of a task that did not run."""
        return self.row(task) + at(outcome)


class TaskCounter:
    """A child's observer (worker/observe.py): counts in its own area of the tally. It never
    raises on a task's path: a state it does not know is not counted."""

    def __init__(self, layout: TaskLayout, area: memoryview[float]) -> None:
        self._rows, self._other = layout.rows, layout.other
        self._area = area

    def received(self, message: Message, queue: str) -> None:
        pass  # counted when it has finished

    def started(self, message: Message, queue: str) -> None:
        pass  # a busy child is on the scoreboard; counted when it has finished

    def finished(
        self, message: Message, queue: str, state: str, runtime: float, reason: str, at: float
    ) -> None:
        block = _AT_OF_STATE.get(state)
        if block is None:
            return
        at_, area = self._rows.get(message.task, self._other) + block, self._area
        if block == _REVOKED:  # it did not run
            area[at_] += 1.0
        else:  # its runtime is from the monotonic clock: >= 0, so every word only grows
            area[at_ + bisect_left(BUCKETS, runtime)] += 1.0
            area[at_ + _SUM] += runtime

    def rejected(self, rejection: Rejected) -> None:
        self._area[self._rows.get(rejection.task_name, self._other) + _REJECTED] += 1.0

    def events_dropped(self, count: int) -> None:
        """For the events' writer in this child: events it could not send and dropped."""
        self._area[_EVENTS_DROPPED] += count


class TaskFigures:
    """One task's row, read from the tally's totals."""

    def __init__(self, totals: list[float], row: int) -> None:
        blocks = [totals[row + at(o) : row + at(o) + _BLOCK] for o in RAN]
        self.outcomes = [int(sum(b[:_BUCKETS])) for b in blocks]
        self.outcomes += [int(totals[row + at(o)]) for o in Outcome if o not in RAN]
        per_bucket = zip(*(b[:_BUCKETS] for b in blocks), strict=True)
        self.buckets = [int(sum(counts)) for counts in per_bucket]
        self.runtime = sum(b[_SUM] for b in blocks)

    @property
    def active(self) -> bool:
        return any(self.outcomes)

    def cumulative_buckets(self) -> list[tuple[str, int]]:
        """(le, count) pairs as Prometheus wants them: cumulative, ending with +Inf."""
        bounds = [*(repr(b) for b in BUCKETS), "+Inf"]
        running, pairs = 0, []
        for bound, count in zip(bounds, self.buckets, strict=True):
            running += count
            pairs.append((bound, running))
        return pairs
