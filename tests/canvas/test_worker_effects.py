"""A worker's side of workflows: the executor's effects, on the memory engines, in process
(tests/worker/harness.py): what each outcome sends, writes and counts, and redelivery."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from forkq import GroupResult, Task, TaskFailed, chain, chord, group
from forkq.engines.contract import outgoing
from forkq.envelope import make_message
from forkq.flow import MAX_DEPTH, Flow, GroupNode, Node, TaskNode
from forkq.states import FAILURE, RETRY
from tests.worker.harness import Harness, task


class Tasks:
    def __init__(self, h: Harness) -> None:
        self.runs: list[tuple[str, tuple[Any, ...]]] = []

        def note(*args: Any) -> list[Any]:
            self.runs.append(("note", args))
            return list(args)

        def boom(*args: Any) -> None:
            raise KeyError("boom")

        def typed(x: int) -> int:
            return x

        self.add = task(h, lambda x, y: x + y, name="add")
        self.tsum = task(h, lambda xs: sum(xs), name="tsum")
        self.note = task(h, note, name="note")
        self.boom = task(h, boom, name="boom")
        self.typed = task(h, typed, name="typed")
        self.quiet = task(h, lambda x: x, name="quiet", ignore_result=True)


@pytest.fixture
def t(h: Harness) -> Tasks:
    return Tasks(h)


def test_a_chain_runs_step_by_step(h: Harness, t: Tasks) -> None:
    result = (t.add.s(1, 2) | t.add.s(3) | t.note.s("end")).delay()
    assert h.drain() == 3
    assert result.get(timeout=1) == [6, "end"]
    assert h.app.broker.size(h.queue) == 0


def test_a_chord_fires_its_body_once_when_its_last_member_lands(h: Harness, t: Tasks) -> None:
    result = chord([t.quiet.s(i) for i in range(4)], t.note.s()).delay()
    members = [h.fetch() for _ in range(4)]
    for delivery in members[:3]:
        h.executor.handle(delivery)
    assert h.app.broker.size(h.queue) == 1  # the last member only: no body yet
    h.executor.handle(members[3])
    assert h.drain() == 1 and result.get(timeout=1) == [[0, 1, 2, 3]]
    for delivery in members:  # each member redelivered and run again: counted once
        h.publish(delivery.body)
    assert h.drain() == 4
    assert t.runs == [("note", ([0, 1, 2, 3],))]


def test_a_member_run_again_before_the_chord_is_complete_counts_once(h: Harness, t: Tasks) -> None:
    chord([t.add.s(1, 1), t.add.s(2, 2)], t.note.s()).delay()
    first = h.fetch()
    h.executor.handle(first)
    h.publish(first.body)  # the same member again (a redelivery)
    h.run_next()  # the second member
    h.run_next()  # the first member, again: the chord already fired
    assert h.drain() == 1 and t.runs == [("note", ([2, 4],))]


def test_a_failed_step_fails_what_follows_and_sends_the_error_callbacks(
    h: Harness, t: Tasks
) -> None:
    workflow = chain(t.add.s(1, 1), t.boom.s(), t.add.s(1), group(t.add.s(1), t.add.s(2)))
    workflow.link_error(t.note.s())
    result = workflow.delay()
    assert isinstance(result, GroupResult)
    h.run_next()
    h.run_next()  # boom: the rest fails now, its errback is sent
    boom = result.parent.parent  # type: ignore[union-attr]
    for handle in (result.parent, *result.results):
        record = h.record(handle.id)  # type: ignore[union-attr]
        assert (record.state, record.exc_type, record.exc_message) == (
            FAILURE,
            "KeyError",
            "'boom'",
        )
    assert h.drain() == 1 and t.runs == [("note", (boom.id,))]  # type: ignore[union-attr]
    with pytest.raises(KeyError):
        result.get(timeout=1)


def test_a_failing_member_fails_the_chord_through_its_body(h: Harness, t: Tasks) -> None:
    workflow = chord([t.add.s(1, 1), t.boom.s(), t.boom.s()], t.tsum.s() | t.add.s(1))
    workflow.link_error(t.note.s())
    result = workflow.delay()
    assert h.drain() == 5  # three members, the body sent to fail, one errback
    header = result.parent.parent  # type: ignore[union-attr]
    assert isinstance(header, GroupResult)
    first_failed = header.results[1].id
    assert t.runs == [("note", (first_failed,))]
    for handle in (result, result.parent):
        with pytest.raises(KeyError) as failed:
            handle.get(timeout=1)  # type: ignore[union-attr]
        assert isinstance(failed.value, TaskFailed)
        assert f"task {first_failed}" in failed.value.remote_traceback


def test_a_retry_is_not_a_failure_and_its_next_try_goes_with_the_finish(
    h: Harness, t: Tasks
) -> None:
    def flaky(self: Task, x: int) -> int:
        if self.request.retries == 0:
            raise self.retry(countdown=0)
        return x

    retried = task(h, flaky, name="flaky", bind=True)
    result = (t.add.s(1, 1) | retried.s() | t.note.s()).delay()
    h.run_next()
    h.run_next()  # flaky: RETRY, its next try published
    assert h.record(result.parent.id).state == RETRY  # type: ignore[union-attr]
    assert t.runs == [] and h.drain() == 2
    assert result.get(timeout=1) == [2]


def test_a_refused_retry_fails_the_rest_of_the_chain(h: Harness, t: Tasks) -> None:
    def forever(self: Task) -> None:
        raise self.retry(countdown=1e12)

    result = (task(h, forever, name="forever", bind=True).s() | t.add.s(1)).delay()
    h.run_next()
    with pytest.raises(TaskFailed, match="RetryRefused"):
        result.get(timeout=1)


def test_a_rejected_step_fails_what_follows_and_is_dead_lettered(h: Harness, t: Tasks) -> None:
    result = (t.add.s("x", "y") | t.typed.s() | t.add.s(1)).apply_async()
    h.run_next()  # "xy" will not convert to the int `typed` takes
    h.run_next()
    assert h.dead_reasons() and "argument 'x'" in h.dead_reasons()[0]
    with pytest.raises(TaskFailed) as failed:
        result.get(timeout=1)
    assert failed.value.exc_type == "ArgumentError" and h.app.broker.size(h.queue) == 0


def test_a_body_whose_header_results_are_gone_is_rejected(h: Harness, t: Tasks) -> None:
    result = chord([t.add.s(1, 1), t.add.s(2, 2)], t.note.s()).delay()
    h.run_next()
    h.run_next()
    h.app.backend.forget(result.parent.results[0].id)  # type: ignore[union-attr]  # expired
    h.run_next()
    with pytest.raises(TaskFailed, match="WorkflowError") as failed:
        result.get(timeout=1)
    assert "has no result (expired?)" in failed.value.exc_message
    assert "has no result" in h.dead_reasons()[0]


def deep_flow(levels: int) -> Flow:
    node: Node = TaskNode(id="leaf", task="add", queue="default")
    for i in range(levels):
        node = GroupNode(id=f"g{i}", members=(node,))
    return Flow(chain=(node,))


def test_a_hostile_message_nested_too_deep_is_dead_lettered_and_its_flow_ignored(
    h: Harness, t: Tasks
) -> None:
    message = make_message("add", (1, 2), {}, queue=h.queue)
    hostile = msgspec.structs.replace(message, flow=deep_flow(MAX_DEPTH + 5))
    h.app.broker.publish([outgoing(h.queue, h.app.codec.encode(hostile))])
    h.run_next()
    assert "nested more than 16 levels" in h.dead_reasons()[0]
    assert h.record(message.id).state == FAILURE and h.app.broker.size(h.queue) == 0


def test_a_message_without_a_flow_takes_the_plain_path(h: Harness, t: Tasks) -> None:
    finishes: list[Any] = []
    real = h.session.finish
    h.session.finish = lambda *args: finishes.append(args[2:]) or real(*args)  # type: ignore[method-assign]
    t.add.delay(1, 2)
    h.run_next()
    (t.add.s(1, 2) | t.add.s(1)).delay()
    h.run_next()
    assert finishes[0] == ()  # session.finish(delivery, write): no effects
    assert len(finishes[1][0].publish) == 1  # the next step
