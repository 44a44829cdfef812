"""The workflow API: signatures, chains, groups and chords, and the messages they send.

Nothing runs here: each test sends a workflow to the memory engine and reads what the queue
holds (`Harness.sent`), or the handles it got back.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from forkq import (
    ArgumentError,
    AsyncResult,
    ConfigurationError,
    GroupResult,
    Signature,
    WorkflowTooDeep,
    chain,
    chord,
    group,
)
from forkq.flow import COLLECT_TASK, STARMAP_TASK, ChordNode, member_ids
from tests.worker.harness import Harness, task


def tasks(h: Harness) -> tuple[Any, Any, Any]:
    add = task(h, lambda x, y: x + y, name="add")
    tsum = task(h, lambda xs: sum(xs), name="tsum", queue="sums", priority=7)
    note = task(h, lambda *values: list(values), name="note")
    return add, tsum, note


def test_s_si_and_signature_make_calls_to_send_later(h: Harness) -> None:
    add, _, _ = tasks(h)
    s = add.s(1, y=2)
    assert (s.task, s.args, s.kwargs, s.immutable) == ("add", (1,), {"y": 2}, False)
    assert add.si(1, 2).immutable
    sig = add.signature((1, 2), countdown=5, queue="q2")
    assert sig.options == {"countdown": 5, "queue": "q2"}
    assert sig.set(priority=3) is sig and sig.options["priority"] == 3
    assert sig.set(eta=0).options.get("countdown") is None  # the one given last wins
    assert s.clone((0,)).args == (0, 1) and add.si(1, 2).clone((0,)).args == (1, 2)
    assert add.s(1, 2)() == 3  # calling a signature runs the task here
    assert repr(add.s(1, y=2)) == "add(1, y=2)"
    assert h.app.signature("add", (1, 2)).task == "add"


def test_unknown_options_and_both_countdown_and_eta_are_refused(h: Harness) -> None:
    add, _, _ = tasks(h)
    with pytest.raises(ConfigurationError, match="unknown option qeue; supported: countdown"):
        add.s(1).set(qeue="x")
    with pytest.raises(ConfigurationError, match="countdown or eta, not both"):
        add.s(1).set(countdown=1, eta=2)
    with pytest.raises(ConfigurationError, match="unknown option retries"):
        (add.s(1, 1) | add.s(2)).apply_async(retries=3)


def test_a_signature_sends_one_plain_message(h: Harness) -> None:
    add, _, _ = tasks(h)
    result = add.s(2, 3).set(priority=4).delay()
    [message] = h.sent()
    assert isinstance(result, AsyncResult) and result.parent is None
    assert (message.id, message.args, message.priority, message.flow) == (
        result.id,
        [2, 3],
        4,
        None,
    )


def test_a_chain_sends_its_first_step_the_rest_travelling_with_it(h: Harness) -> None:
    add, _, _ = tasks(h)
    result = (add.s(1, 2) | add.s(3) | add.si(4, 5)).delay()
    [first] = h.sent()
    assert first.args == [1, 2] and first.flow is not None
    rest = first.flow.chain
    assert [n.args for n in rest] == [(3,), (4, 5)]  # type: ignore[union-attr]
    assert result.id == rest[-1].id and result.parent is not None  # type: ignore[union-attr]
    assert result.parent.id == rest[0].id  # type: ignore[union-attr]
    assert result.parent.parent.id == first.id  # type: ignore[attr-defined]
    assert (chain([add.s(1, 2), chain(add.s(3), add.s(4))])).tasks[2].args == (4,)


def test_a_group_sends_every_member_in_one_round_trip(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    add, _, _ = tasks(h)
    publishes = []
    real = h.app.broker.publish
    monkeypatch.setattr(
        h.app.broker, "publish", lambda items: publishes.append(len(items)) or real(items)
    )
    result = group(add.s(i, i) for i in range(5)).delay()
    assert publishes == [5]
    assert isinstance(result, GroupResult) and len(result) == 5
    sent = h.sent()
    assert [m.id for m in sent] == [r.id for r in result.results]
    assert all(m.flow is None for m in sent)


def test_a_chord_sends_its_header_each_member_carrying_the_chord(h: Harness) -> None:
    add, tsum, _ = tasks(h)
    result = chord((add.s(i, i) for i in range(3)), tsum.s()).delay()
    sent = h.sent()
    header = result.parent
    assert isinstance(header, GroupResult)
    assert [m.id for m in sent] == [r.id for r in header] == member_ids(header.id, 3)
    for message in sent:
        assert message.flow is not None and message.flow.chord is not None
        ref = message.flow.chord
        assert (ref.id, ref.size, ref.ids, ref.body.id) == (header.id, 3, (), result.id)  # type: ignore[union-attr]
        assert (ref.body.queue, ref.body.priority) == ("sums", 7)  # type: ignore[union-attr]
    assert chord([add.s(1, 1)])(tsum.s()).parent is not None  # chord(header)(body) sends it


def test_a_chords_members_carry_it_in_constant_size(h: Harness) -> None:
    add, tsum, _ = tasks(h)
    sizes = []
    for n in (10, 1_000):
        chord([add.s(i, i) for i in range(n)], tsum.s()).delay()
        sent = h.sent()
        sizes.append(max(len(h.app.codec.encode(m)) for m in sent))
    assert sizes[1] - sizes[0] <= 16  # digits (of indexes, arguments, size), not 990 ids


def test_a_member_with_its_own_task_id_makes_the_chord_list_every_id(h: Harness) -> None:
    add, tsum, _ = tasks(h)
    chord([add.s(1, 1).set(task_id="mine"), add.s(2, 2)], tsum.s()).delay()
    refs = [m.flow.chord for m in h.sent() if m.flow is not None]
    assert len(refs) == 2 and refs[0] == refs[1]
    assert refs[0] is not None and refs[0].ids[0] == "mine" and len(refs[0].ids) == 2


def test_a_group_followed_by_steps_is_a_chord(h: Harness) -> None:
    add, tsum, note = tasks(h)
    result = (add.s(1, 1) | group(add.s(1), add.s(2)) | tsum.s() | note.s()).delay()
    [first] = h.sent()
    assert first.flow is not None
    [step] = first.flow.chain
    assert isinstance(step, ChordNode) and len(step.header) == 2
    assert result.parent is not None and isinstance(result.parent.parent, GroupResult)
    assert result.parent.parent.parent.id == first.id  # type: ignore[union-attr]


def test_a_group_whose_result_must_be_one_value_collects_it(h: Harness) -> None:
    add, _, note = tasks(h)
    result = chord([group(add.s(1, 1), add.s(2, 2)), add.s(3, 3)], note.s()).delay()
    sent = h.sent()
    assert len(sent) == 3  # the inner group's two members, the other member
    inner = sent[0].flow.chord  # type: ignore[union-attr]
    assert inner is not None and inner.body.task == COLLECT_TASK  # type: ignore[union-attr]
    outer = inner.chord
    assert outer is not None and inner.body.id == member_ids(outer.id, 2)[0]  # type: ignore[union-attr]
    assert result.parent is not None and len(result.parent) == 2  # type: ignore[arg-type]


def test_a_chain_ending_in_a_group_gives_a_group_result(h: Harness) -> None:
    add, _, _ = tasks(h)
    result = (add.s(1, 1) | group(add.s(1), add.s(2))).delay()
    assert isinstance(result, GroupResult) and result.parent is not None


def test_a_workflows_options_go_to_its_tasks_countdown_to_those_that_start_it(
    h: Harness,
) -> None:
    add, _, _ = tasks(h)
    workflow = chain(add.s(1, 1), add.s(2).set(queue="own"), add.s(3))
    workflow.apply_async(priority=5, eta=1.0, headers={"h": "v"})  # due long ago
    [first] = h.sent()
    assert (first.priority, first.eta, first.headers) == (5, 1.0, {"h": "v"})
    steps = first.flow.chain  # type: ignore[union-attr]
    assert [(s.queue, s.priority, s.eta) for s in steps] == [  # type: ignore[union-attr]
        ("own", 5, None),
        (h.queue, 5, None),
    ]
    result = workflow.apply_async(countdown=30, task_id="last")
    assert result.id == "last" and h.sent() == []  # not due for 30 s
    moment = datetime(2030, 1, 1, tzinfo=timezone.utc)
    group(add.s(1, 1)).apply_async(expires=moment)
    assert h.sent()[0].expires == moment.timestamp()


def test_arguments_of_apply_async_go_first_in_the_tasks_that_start_it(h: Harness) -> None:
    add, _, _ = tasks(h)
    group(add.s(1), add.s(2), add.si(3, 3)).apply_async((10,))
    assert [m.args for m in h.sent()] == [[10, 1], [10, 2], [3, 3]]


def test_calls_are_checked_with_a_stand_in_for_the_result_they_are_given(h: Harness) -> None:
    add, _, _ = tasks(h)
    with pytest.raises(ArgumentError, match="given a result first: use si"):
        (add.s(1, 2) | add.s(1, 2)).delay()
    with pytest.raises(ArgumentError):
        add.s(1).delay()
    (add.s(1, 2) | add.si(1, 2)).delay()  # immutable: given nothing
    assert len(h.sent()) == 1


def test_link_and_link_error_travel_with_the_task(h: Harness) -> None:
    add, _, note = tasks(h)
    add.apply_async((1, 2), link=note.s(), link_error=[note.s("failed"), note.si()])
    [message] = h.sent()
    assert message.flow is not None
    assert [n.task for n in message.flow.link] == ["note"]  # type: ignore[union-attr]
    assert len(message.flow.link_error) == 2
    plain = add.apply_async((1, 2))  # no callbacks: the plain path
    assert h.sent()[0].flow is None and plain.parent is None


def test_a_chains_link_error_goes_on_its_last_task(h: Harness) -> None:
    add, tsum, note = tasks(h)
    workflow = add.s(1, 1) | add.s(2)
    assert workflow.on_error(note.s()) is workflow
    assert workflow.tasks[-1].errbacks and not workflow.tasks[0].errbacks
    body = tsum.s()
    chord([add.s(1, 1)], body).link_error(note.s())
    assert body.errbacks


def test_starmap_and_chunks(h: Harness) -> None:
    add, _, _ = tasks(h)
    one = add.starmap([(1, 2), (3, 4)])
    assert (one.task, one.args) == (STARMAP_TASK, ("add", [[1, 2], [3, 4]]))
    chunks = add.chunks([(i, i) for i in range(5)], 2)
    assert [c.args[1] for c in chunks.tasks] == [[[0, 0], [1, 1]], [[2, 2], [3, 3]], [[4, 4]]]
    with pytest.raises(ArgumentError):
        add.starmap([(1,)])
    with pytest.raises(ConfigurationError, match="n >= 1"):
        add.chunks([], 0)


def test_a_workflow_nested_too_deep_names_its_depth_and_the_limit(h: Harness) -> None:
    add, tsum, _ = tasks(h)
    workflow: Signature = add.s(1, 1)
    for _ in range(20):
        workflow = chord([workflow, add.s(1, 1)], tsum.s())
    with pytest.raises(WorkflowTooDeep, match=r"nested 21 levels deep.*limit of 16") as deep:
        workflow.delay()
    assert (deep.value.depth, deep.value.limit) == (21, 16)
    assert isinstance(deep.value, ConfigurationError)
    deep_chain: Signature = add.s(1, 1)
    for _ in range(1_000):  # a chain of chains is one chain: no recursion, no limit
        deep_chain = chain(deep_chain, add.s(1))
    deep_chain.delay()


def test_a_signature_of_no_app_and_an_empty_chain_are_refused(h: Harness) -> None:
    with pytest.raises(ConfigurationError, match="belongs to no app"):
        Signature("add", (1, 2)).delay()
    with pytest.raises(ConfigurationError, match="at least one task"):
        chain(app=h.app).delay()
    with pytest.raises(ConfigurationError, match="has no body"):
        chord([task(h, lambda: 1, name="one").s()]).delay()
