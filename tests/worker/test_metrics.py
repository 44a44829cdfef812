"""The worker's metrics in one process, on the memory engine: a real executor counts through
its observer into a tally area, the master's side adds what it sees of dead children, and
what a scrape gets parses with prometheus_client's own parser to what ran."""

from __future__ import annotations

import signal
from collections.abc import Iterable
from typing import Any

import msgspec
import pytest
from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from forkq.engines.contract import outgoing
from forkq.envelope import make_message
from forkq.exceptions import BrokerUnavailable
from forkq.pool.exits import ChildExit
from forkq.pool.scoreboard import SlotState
from forkq.pool.watch import Ending
from forkq.states import FAILURE, RETRY, REVOKED, SUCCESS
from forkq.worker.executor import Executor
from forkq.worker.metrics import WorkerMetrics
from forkq.worker.observe import Observers, Rejected
from forkq.worker.supervision import WorkerSupervision
from forkq.worker.task_counts import BUCKETS, OTHER, OUTCOME_OF_STATE, TaskLayout, Word
from tests.worker.harness import Harness, task
from tests.worker.test_supervision import WORKER, busy_with, held, killed

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class _Scraped(Collector):
    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics.collect()


def scrape(metrics: WorkerMetrics) -> Samples:
    """What a scrape serves, through the text format and back: sample name and labels to
    value."""
    text = generate_latest(_Scraped(metrics)).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def tasks(samples: Samples, task: str, state: str) -> float:
    return samples[("forkq_tasks_total", (("state", state), ("task", task)))]


def with_counter(h: Harness, metrics: WorkerMetrics, index: int = 0) -> None:
    observers = Observers([metrics.observer(index)])
    h.executor = Executor(h.app, h.session, h.scoreboard.writer(0), observers=observers)


def send(h: Harness, name: str, *args: Any) -> None:
    body = h.app.codec.encode(make_message(name, list(args), {}, queue=h.queue))
    h.publish(body)


def test_what_ran_is_counted_by_task_and_outcome_with_its_runtimes() -> None:
    h = Harness()

    def ok(x: int) -> int:
        return x

    def broken() -> None:
        raise ValueError("no")

    def again(self: Any) -> None:
        raise self.retry(countdown=600, max_retries=1)

    task(h, ok)
    task(h, broken)
    task(h, again, bind=True)
    task(h, lambda: None, name="never")
    metrics = WorkerMetrics(h.app.tasks, capacity=2)
    with_counter(h, metrics)
    for name, args in [("ok", (1,)), ("ok", (2,)), ("broken", ()), ("again", ())]:
        send(h, name, *args)
    h.publish(b"not a message")  # dead-lettered, its task unknown
    send(h, "nobody.registered")  # dead-lettered: no such task here
    assert h.drain() == 6
    samples = scrape(metrics)
    assert tasks(samples, "ok", "succeeded") == 2
    assert tasks(samples, "ok", "failed") == 0  # every outcome of a task that came
    assert tasks(samples, "broken", "failed") == 1
    assert tasks(samples, "again", "retried") == 1
    assert tasks(samples, OTHER, "rejected") == 2
    assert not [labels for _, labels in samples if ("task", "never") in labels]  # never came
    ran = samples[("forkq_task_runtime_seconds_count", (("task", "ok"),))]
    inf = samples[("forkq_task_runtime_seconds_bucket", (("le", "+Inf"), ("task", "ok")))]
    assert ran == inf == 2
    assert 0 < samples[("forkq_task_runtime_seconds_sum", (("task", "ok"),))] < 1
    assert ("forkq_task_runtime_seconds_count", (("task", OTHER),)) not in samples  # none ran
    assert samples[("forkq_dead_letters_total", ())] == 2 == len(h.dead_reasons())


def test_runtimes_fall_in_the_buckets_prometheus_reads_cumulatively() -> None:
    metrics = WorkerMetrics(["t"], capacity=1)
    counter = metrics.observer(0)
    message = make_message("t", [], {}, queue="q")
    for runtime in (0.0005, 0.001, 0.002, 0.7, 5000.0):
        counter.finished(message, "q", SUCCESS, runtime, "", 0.0)
    counter.finished(message, "q", REVOKED, 0.0, "", 0.0)  # did not run: no runtime
    counter.finished(message, "q", "STARTED", 1.0, "", 0.0)  # no outcome: not counted
    samples = scrape(metrics)

    def below(le: str) -> float:
        return samples[("forkq_task_runtime_seconds_bucket", (("le", le), ("task", "t")))]

    assert (below("0.001"), below("0.0025"), below("0.5"), below("1.0")) == (2, 3, 3, 4)
    assert (below("1800.0"), below("+Inf")) == (4, 5)
    assert (
        len([k for k in samples if k[0] == "forkq_task_runtime_seconds_bucket"]) == len(BUCKETS) + 1
    )
    assert samples[("forkq_task_runtime_seconds_sum", (("task", "t"),))] == pytest.approx(5000.7035)
    assert tasks(samples, "t", "revoked") == 1 and tasks(samples, "t", "succeeded") == 5


def test_a_rejection_counts_for_its_task_when_it_could_be_read() -> None:
    metrics = WorkerMetrics(["t"], capacity=1)
    metrics.observer(0).rejected(Rejected("id", "t", "q", "expired"))
    metrics.observer(0).rejected(Rejected("", "", "q", "not JSON"))
    samples = scrape(metrics)
    assert tasks(samples, "t", "rejected") == 1 and tasks(samples, OTHER, "rejected") == 1


def test_the_master_counts_a_dead_childs_task_lost_or_failed_and_what_it_released() -> None:
    h = Harness()
    metrics = WorkerMetrics(["slow"], capacity=2)
    supervision = WorkerSupervision(h.app, WORKER, metrics=metrics)
    [crashed] = held(h.app, [b"a"])
    supervision.child_exited(killed(busy_with(crashed)))  # its message goes back
    [timed_out] = held(h.app, [b"b"])
    supervision.child_exited(killed(busy_with(timed_out), Ending.TIME_LIMIT))
    idle = msgspec.structs.replace(busy_with(timed_out), state=SlotState.IDLE, receipt="")
    supervision.child_exited(ChildExit(1, 2, signal.SIGKILL, idle))  # ran nothing
    samples = scrape(metrics)
    assert tasks(samples, "slow", "lost") == 1
    assert tasks(samples, "slow", "failed") == 1  # its FAILURE stored by the master
    assert samples[("forkq_task_runtime_seconds_count", (("task", "slow"),))] == 1  # it ran
    assert samples[("forkq_dead_letters_total", ())] == 1 == len(h.dead_reasons())
    assert samples[("forkq_released_messages_total", ())] == 1


def test_queue_depths_come_from_the_tick_and_go_when_the_broker_does_not_answer() -> None:
    h = Harness()
    metrics = WorkerMetrics([], capacity=1)
    h.app.broker.publish([outgoing("q", b"now"), outgoing("q", b"later", delay=600)])
    supervision = WorkerSupervision(h.app, WORKER, ["q", "empty"], metrics)
    supervision.tick()
    samples = scrape(metrics)
    assert samples[("forkq_queue_messages", (("queue", "q"),))] == 2
    assert samples[("forkq_queue_delayed_messages", (("queue", "q"),))] == 1
    assert samples[("forkq_queue_messages", (("queue", "empty"),))] == 0
    assert samples[("forkq_broker_up", ())] == 1 and metrics.unready() is None

    def unreachable(*_: object) -> None:
        raise BrokerUnavailable("connection refused")

    h.app.broker.heartbeat = unreachable  # type: ignore[method-assign]
    supervision.tick()
    samples = scrape(metrics)
    assert ("forkq_queue_messages", (("queue", "q"),)) not in samples  # not served stale
    assert samples[("forkq_broker_up", ())] == 0
    assert metrics.unready() == "the broker did not answer the last heartbeat"


def test_events_dropped_add_up_from_children_and_master() -> None:
    metrics = WorkerMetrics([], capacity=2)
    metrics.observer(1).events_dropped(3)
    metrics.events_dropped(2)
    assert scrape(metrics)[("forkq_events_dropped_total", ())] == 5
    assert metrics.tally.totals()[Word.EVENTS_DROPPED] == 5


def test_every_child_lays_its_area_out_alike_with_other_last() -> None:
    layout = TaskLayout(["b", "a", OTHER, "a"])
    assert layout.names == ("a", "b", OTHER)
    assert layout.row("b") - layout.row("a") == layout.row(OTHER) - layout.row("b") > 0
    assert layout.row("unknown") == layout.other
    assert layout.width == layout.other + layout.row("b") - layout.row("a")
    assert {FAILURE, RETRY, SUCCESS} < set(OUTCOME_OF_STATE)
