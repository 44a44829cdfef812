"""What a message carries of a workflow (forkq.flow) and how a node becomes messages
(forkq.canvas.dispatch): the wire format, its checks against hostile input, dispatching."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forkq.canvas.dispatch import Continuation, Value, body_messages, messages
from forkq.envelope import Codec, Message, make_message
from forkq.exceptions import MessageRejected, WorkflowTooDeep
from forkq.flow import (
    MAX_DEPTH,
    ChainNode,
    ChordNode,
    ChordRef,
    Failed,
    Flow,
    Gather,
    GroupNode,
    Node,
    TaskNode,
    depth_of,
    member_ids,
    result_id,
)

codec = Codec(secret=None, max_bytes=1 << 20)


def t(task_id: str, *args: object, **fields: object) -> TaskNode:
    return TaskNode(id=task_id, task="add", queue="q", args=args, **fields)  # type: ignore[arg-type]


def test_a_message_without_a_workflow_carries_no_flow_and_only_what_it_says() -> None:
    message = make_message("proj.add", (1, 2), {}, queue="q")
    body = json.loads(codec.encode(message))
    assert set(body) == {"id", "task", "args", "queue", "created_at", "origin"}
    assert codec.decode(codec.encode(message)) == message


def test_a_message_of_an_earlier_forkq_decodes_unchanged() -> None:
    old = (
        b'{"v":1,"id":"a","task":"t","args":[1],"kwargs":{},"queue":"q","eta":null,'
        b'"expires":null,"retries":0,"priority":0,"headers":{},"created_at":1.0,"origin":""}'
    )
    message = codec.decode(old)
    assert (message.id, message.args, message.flow) == ("a", [1], None)


def test_a_flow_round_trips_and_leaves_out_its_defaults() -> None:
    flow = Flow(
        chain=(ChainNode(steps=(t("b", 1), GroupNode(id="g", members=(t("g-0"),)))),),
        chord=ChordRef(id="c", size=2, body=t("body")),
        link_error=(t("e", immutable=True),),
    )
    message = msgspec.structs.replace(make_message("t", (), {}, queue="q"), flow=flow)
    assert codec.decode(codec.encode(message)).flow == flow
    assert b'"gather"' not in codec.encode(message) and b'"link":' not in codec.encode(message)


def test_member_ids_are_derived_unless_listed() -> None:
    assert member_ids("c", 3) == ["c-0", "c-1", "c-2"]
    assert member_ids("c", 2, ("x", "y")) == ["x", "y"]
    chord = ChordNode(id="c", header=(), body=ChainNode(steps=(t("a"), t("z"))))
    assert result_id(chord) == "z" and result_id(GroupNode(id="g", members=())) is None


def nested(levels: int) -> Node:
    node: Node = t("leaf")
    for i in range(levels - 1):
        node = GroupNode(id=f"g{i}", members=(node,))
    return node


def test_depth_counts_levels_of_nodes_and_stops_past_its_limit() -> None:
    assert depth_of(nested(5)) == 5
    assert depth_of(Flow(chain=(nested(3),))) == 3
    assert depth_of(nested(10_000), limit=MAX_DEPTH) == MAX_DEPTH + 1


@pytest.mark.parametrize(
    ("flow", "reason"),
    [
        (Flow(chain=(nested(MAX_DEPTH + 1),)), "nested more than 16 levels deep"),
        (Flow(chord=ChordRef(id="c", size=-1, body=t("b"))), "of -1 members"),
        (Flow(chord=ChordRef(id="c", size=10**9, body=t("b"))), "at most 1000000"),
        (Flow(gather=Gather(id="c", size=3, ids=("a",))), "lists 1"),
        (Flow(link=(TaskNode(id="", task="t", queue="q"),)), "without an id"),
    ],
)
def test_a_flow_unfit_to_act_on_rejects_its_message(flow: Flow, reason: str) -> None:
    message = msgspec.structs.replace(make_message("t", (), {}, queue="q"), flow=flow)
    with pytest.raises(MessageRejected, match=reason) as rejected:
        codec.decode(codec.encode(message))
    assert rejected.value.task_id == message.id  # its own FAILURE is stored, no more


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
node_like = st.recursive(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["task", "chain", "group", "chord", "x"])},
        optional={"id": json_values, "task": json_values, "queue": json_values},
    ),
    lambda inner: st.fixed_dictionaries(
        {"type": st.sampled_from(["task", "chain", "group", "chord"])},
        optional={
            "id": st.text(max_size=4),
            "task": st.just("t"),
            "queue": st.just("q"),
            "steps": st.lists(inner, max_size=3),
            "members": st.lists(inner, max_size=3),
            "header": st.lists(inner, max_size=3),
            "body": inner,
            "link": st.lists(inner, max_size=2),
        },
    ),
    max_leaves=12,
)
flow_like = st.fixed_dictionaries(
    {},
    optional={
        "chain": st.lists(node_like, max_size=3) | json_values,
        "chord": st.fixed_dictionaries(
            {"id": st.text(max_size=4), "size": st.integers(-2, 5), "body": node_like}
        )
        | json_values,
        "link": st.lists(node_like, max_size=2),
        "gather": st.fixed_dictionaries({"id": st.just("c"), "size": st.integers(-1, 3)}),
        "failed": st.fixed_dictionaries({"task_id": st.just("x"), "exc_type": json_values}),
    },
)


@settings(max_examples=150, deadline=None)
@given(flow_like)
def test_hostile_flows_never_raise_anything_but_rejection(flow: dict[str, object]) -> None:
    body = {"id": "h", "task": "t", "queue": "q", "created_at": 1, "flow": flow}
    try:
        message = codec.decode(json.dumps(body).encode())
    except MessageRejected as rejected:
        assert rejected.reason and rejected.task_id == "h"
        return
    assert message.flow is not None and depth_of(message.flow) <= MAX_DEPTH


def test_a_task_node_becomes_one_message_given_the_result_first() -> None:
    node = t("a", 2, countdown=10.0, expires=60.0, link=(t("l"),))
    [message] = messages(node, Value(1), now=100.0)
    assert (message.id, message.args, message.eta, message.expires) == ("a", [1, 2], 110.0, 160.0)
    assert message.flow == Flow(link=(t("l"),))
    [immutable] = messages(t("b", 2, immutable=True), Value(1))
    assert immutable.args == [2] and immutable.flow is None


def test_a_chain_sends_its_first_step_carrying_the_rest_and_what_follows() -> None:
    ref = ChordRef(id="c", size=1, body=t("body"))
    node = ChainNode(steps=(t("a"), t("b")))
    [message] = messages(node, None, Continuation((t("z"),), ref))
    assert message.id == "a"
    assert message.flow == Flow(chain=(t("b"), t("z")), chord=ref)


def test_a_group_followed_by_a_step_is_sent_as_a_chord() -> None:
    group = GroupNode(id="g", members=(t("g-0"), t("g-1")))
    sent = messages(group, Value(5), Continuation((t("next"), t("last"))))
    assert [m.args for m in sent] == [[5], [5]]
    ref = sent[0].flow.chord  # type: ignore[union-attr]
    assert ref == ChordRef(id="g", size=2, body=ChainNode(steps=(t("next"), t("last"))))
    with pytest.raises(ValueError, match="must end in one result"):
        messages(group, None, Continuation((), ref))


def test_a_chord_body_is_given_the_header_by_id_or_fails_as_it_is_told() -> None:
    ref = ChordRef(id="c", size=2, body=GroupNode(id="g", members=(t("x"), t("y"))))
    gathered = body_messages(ref)
    assert [m.flow.gather for m in gathered] == [Gather(id="c", size=2)] * 2  # type: ignore[union-attr]
    failed = Failed(task_id="c-1", exc_type="KeyError", exc_message="'k'")
    doomed = body_messages(ref, failed=failed)
    assert [m.flow.failed for m in doomed] == [failed, failed]  # type: ignore[union-attr]
    assert all(m.flow.gather is None for m in doomed)  # type: ignore[union-attr]


def test_a_chord_of_no_members_sends_its_body_given_an_empty_list() -> None:
    [message] = messages(ChordNode(id="c", header=(), body=t("body")))
    assert message.flow == Flow(gather=Gather(id="c", size=0))


def test_a_message_nested_deeper_than_the_limit_is_not_sent() -> None:
    node = t("a", link=(nested(MAX_DEPTH + 1),))
    with pytest.raises(WorkflowTooDeep, match=f"nested {MAX_DEPTH + 1} levels"):
        messages(node)


def test_messages_decode_as_sent() -> None:
    sent = messages(ChordNode(id="c", header=(t("c-0"), t("c-1")), body=t("b")), Value([1]))
    assert [codec.decode(codec.encode(m)) for m in sent] == sent
    assert all(isinstance(m, Message) for m in sent)
