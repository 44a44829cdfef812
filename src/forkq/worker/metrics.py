"""The worker's metrics, in the master: what the children counted (the tally), what the master
counted itself when it reaped them, and the queues' depths as the last heartbeat read them.
Served by the pool's endpoint (pool/metrics.py): this is its `Exposed`, which also says
whether the worker is ready (the broker answered the last heartbeat); the names follow
Prometheus' conventions (base units, `_total` counters, `_seconds`, `_bytes`).

    forkq_tasks_total{task,state}          succeeded, failed, retried, revoked, rejected (by
                                           the children), lost and the failed of a task
                                           killed for its time limit (by the master, at reap)
    forkq_task_runtime_seconds{task}       histogram of the tasks that ran (task_counts.py)
    forkq_dead_letters_total               rejected by the children + buried by the master
    forkq_released_messages_total          put back by the master when their child died
    forkq_events_dropped_total             events dropped because their buffer was full
    forkq_queue_messages{queue}            each queue consumed, as `Broker.size` counts
    forkq_queue_delayed_messages{queue}    those not due yet (not on RabbitMQ)
    forkq_broker_up                        1 when the master's last heartbeat got through

Events dropped, the hook for the events' writer: in a child, `observer(index).events_dropped(n)`
(a counter of the child's own slot: every counter of one slot writes the same area); in the
master, `events_dropped(n)`. Both add to forkq_events_dropped_total.

Queue depths are read by the master's tick (`WorkerSupervision.tick`, every third of the
lease: 10 s by default), never by a scrape, which answers from the last reading: a scrape
never waits on the broker. When a reading fails, the depths are dropped until one succeeds,
rather than served stale.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from forkq.engines.contract import Broker, QueueDepth
from forkq.pool.exits import ChildExit
from forkq.pool.scoreboard import SlotState
from forkq.pool.tally import Tally
from forkq.worker.task_counts import Outcome, TaskCounter, TaskFigures, TaskLayout, Word, reaped


class WorkerMetrics:
    """Made before the fork with the task names; each child takes its `observer`."""

    def __init__(self, names: Iterable[str], capacity: int) -> None:
        self.layout = TaskLayout(names)
        self.tally = Tally(capacity, self.layout.width)
        self.depths: dict[str, QueueDepth] = {}  # by queue, from the last tick's reading
        self.broker_up = True

    def observer(self, index: int) -> TaskCounter:
        """In the child of slot `index`, after the fork: its counter."""
        return TaskCounter(self.layout, self.tally.area(index))

    # -- what the master counts -------------------------------------------------------------

    def child_exited(self, exit: ChildExit) -> None:
        """The task a dead child was running, as `reaped` counts it: failed when the master
        killed it for its time limit (its FAILURE is stored; it ran from the start its slot
        shows), nothing when it was terminated (revoked), else lost (it runs again)."""
        seen = exit.last_seen
        outcome = reaped(exit.reason) if seen.state == SlotState.BUSY else None
        if outcome is Outcome.FAILED:
            runtime = max(0.0, time.time() - seen.started_at)
            bucket, total = self.layout.ran(seen.task_name, outcome, runtime)
            self.tally.add(bucket)
            self.tally.add(total, runtime)
        elif outcome is not None:
            self.tally.add(self.layout.count(seen.task_name, outcome))

    def released(self, count: int) -> None:
        self.tally.add(Word.RELEASED, count)

    def buried(self, count: int) -> None:
        self.tally.add(Word.BURIED, count)

    def events_dropped(self, count: int) -> None:
        """For the events' writer in the master: events it could not send and dropped."""
        self.tally.add(Word.EVENTS_DROPPED, count)

    def heard(self, answered: bool) -> None:
        """Whether the master's last heartbeat (and what the tick did with it) got through."""
        self.broker_up = answered
        if not answered:
            self.depths = {}

    def unready(self) -> str | None:
        """For /readyz: the broker, as the master's last heartbeat found it. The reason is
        in the worker's log; the endpoint says no more (it may be reachable by anyone)."""
        return None if self.broker_up else "the broker did not answer the last heartbeat"

    def read_depths(self, broker: Broker, queues: Sequence[str]) -> None:
        """On the master's tick: each queue's depth, kept for the scrapes until the next."""
        self.depths = {}  # a failure below leaves none rather than stale ones
        self.depths = {queue: broker.depth(queue) for queue in queues}

    # -- what a scrape reads ----------------------------------------------------------------

    def collect(self, occupied: Sequence[int] | None = None) -> Iterable[Metric]:
        """What a scrape serves; `occupied`: the slots with a child now (None: every slot)."""
        totals = self.tally.totals(occupied)
        yield from self._task_families(totals)
        rejected = sum(
            totals[self.layout.count(name, Outcome.REJECTED)] for name in self.layout.names
        )
        yield _counter(
            "forkq_dead_letters", "Messages dead-lettered", rejected + totals[Word.BURIED]
        )
        yield _counter(
            "forkq_released_messages",
            "Messages put back in their queue by the master when the child holding them died",
            totals[Word.RELEASED],
        )
        yield _counter(
            "forkq_events_dropped",
            "Task and worker events dropped because their buffer was full",
            totals[Word.EVENTS_DROPPED],
        )
        yield from self._queue_families()
        yield GaugeMetricFamily(
            "forkq_broker_up",
            "1 when the master's last heartbeat reached the broker, else 0",
            value=int(self.broker_up),
        )

    def _task_families(self, totals: list[float]) -> Iterable[Metric]:
        tasks = CounterMetricFamily(
            "forkq_tasks", "Tasks handled, by task and outcome", labels=["task", "state"]
        )
        runtimes = HistogramMetricFamily(
            "forkq_task_runtime_seconds", "How long tasks ran", labels=["task"]
        )
        for name in self.layout.names:
            figures = TaskFigures(totals, self.layout.rows[name])
            if not figures.active:  # a task that never came: no series
                continue
            for outcome in Outcome:
                tasks.add_metric([name, outcome.name.lower()], figures.outcomes[outcome])
            if any(figures.buckets):
                runtimes.add_metric([name], figures.cumulative_buckets(), figures.runtime)
        yield tasks
        yield runtimes

    def _queue_families(self) -> Iterable[Metric]:
        messages = GaugeMetricFamily(
            "forkq_queue_messages",
            "Messages in a queue this worker consumes: waiting, held, and delayed where "
            "forkq_queue_delayed_messages is given",
            labels=["queue"],
        )
        delayed = GaugeMetricFamily(
            "forkq_queue_delayed_messages",
            "Messages in a queue waiting for their due time (countdown, eta, retry)",
            labels=["queue"],
        )
        for queue, depth in sorted(self.depths.items()):
            messages.add_metric([queue], depth.messages)
            if depth.delayed is not None:
                delayed.add_metric([queue], depth.delayed)
        yield messages
        yield delayed


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)
