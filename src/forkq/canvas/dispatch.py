"""A workflow's node, and what follows it, to the messages that start it: what a client sends
for a whole workflow, and a worker for the next step, a callback or a chord's body.

    messages(node, given, chain, chord) ─► [Message]
      TaskNode   one message: `given` first among its arguments (unless the node is
                 immutable), its flow what follows (chain, chord) and its own callbacks
      ChainNode  its first step's messages, its other steps chained before `chain`
      GroupNode  one per member; followed by a chain, a chord whose body is the chain's first
      ChordNode  one per header member, each carrying the chord (ChordRef); what follows the
                 chord is chained after its body. A chord of no members: its body, given []

    given: Value(result) to put first among the arguments, a Gather (a chord body's: the
    worker fetches the results), or None.

Every id is the node's, fixed when the workflow was built, and a message's times count from
`now`: building the same messages again (a redelivered step doing its effects again) makes
messages with the same task ids.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple, Union

from forkq.envelope import Message, origin
from forkq.exceptions import WorkflowTooDeep
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

UNLIMITED = 1 << 30  # depth_of's limit where the depth itself is wanted


class Value(NamedTuple):
    """A result to put first among a step's arguments."""

    value: Any


Given = Union[Value, Gather, None]  # noqa: UP007 - a runtime alias, for Python 3.10


class Continuation(NamedTuple):
    """What follows a node: steps chained after it, and the chord its result is a member of."""

    chain: tuple[Node, ...] = ()
    chord: ChordRef | None = None


NOTHING = Continuation()


def messages(
    node: Node,
    given: Given = None,
    then: Continuation = NOTHING,
    *,
    failed: Failed | None = None,
    now: float | None = None,
) -> list[Message]:
    """The messages that start `node`, followed by `then`. With `failed`, they are sent only
    to fail with that upstream error (see `Flow.failed`). A message whose flow nests deeper
    than MAX_DEPTH raises `WorkflowTooDeep`; a group that must end in one result, or a chord
    member that does not, raises ValueError (`forkq.canvas.build` makes neither)."""
    out: list[Message] = []
    _Sender(out, failed, time.time() if now is None else now).add(node, given, then)
    return out


def body_messages(
    ref: ChordRef, *, failed: Failed | None = None, now: float | None = None
) -> list[Message]:
    """The messages of a chord's body, sent when its last member's vote lands: given the
    members' results (`Gather`); or, with `failed`, sent to fail."""
    given = None if failed is not None else Gather(id=ref.id, size=ref.size, ids=ref.ids)
    return messages(ref.body, given, Continuation((), ref.chord), failed=failed, now=now)


def chained(first: Node, rest: tuple[Node, ...]) -> Node:
    """`first` then `rest`, as one node (a chain's steps flattened into one chain)."""
    if not rest:
        return first
    steps = first.steps if isinstance(first, ChainNode) else (first,)
    return ChainNode(steps=(*steps, *rest))


class _Sender:
    def __init__(self, out: list[Message], failed: Failed | None, now: float) -> None:
        self.out = out
        self.failed = failed
        self.now = now
        self.origin = origin()

    def add(self, node: Node, given: Given, then: Continuation) -> None:
        if isinstance(node, TaskNode):
            self.out.append(self.message(node, given, then))
        elif isinstance(node, ChainNode):
            if node.steps:
                rest = (*node.steps[1:], *then.chain)
                self.add(node.steps[0], given, Continuation(rest, then.chord))
            elif then.chain:
                self.add(then.chain[0], given, Continuation(then.chain[1:], then.chord))
        elif isinstance(node, GroupNode):
            self.add_group(node, given, then)
        else:
            self.add_chord(node, given, then)

    def add_group(self, node: GroupNode, given: Given, then: Continuation) -> None:
        if then.chain:  # a group followed by more steps is a chord
            chord = ChordNode(id=node.id, header=node.members, body=then.chain[0])
            self.add_chord(chord, given, Continuation(then.chain[1:], then.chord))
        elif then.chord is not None:
            raise ValueError(f"group {node.id} is a chord's member: it must end in one result")
        else:
            for member in node.members:
                self.add(member, given, NOTHING)

    def add_chord(self, node: ChordNode, given: Given, then: Continuation) -> None:
        found = [result_id(member) for member in node.header]
        ids = [i for i in found if i is not None]
        if len(ids) != len(found):
            raise ValueError(f"chord {node.id} has a member that does not end in one result")
        derived = ids == member_ids(node.id, len(ids))
        ref = ChordRef(
            id=node.id,
            size=len(ids),
            body=chained(node.body, then.chain),
            chord=then.chord,
            ids=() if derived else tuple(ids),
        )
        if not node.header:
            self.add(ref.body, Gather(id=ref.id, size=0), Continuation((), ref.chord))
        for member in node.header:
            self.add(member, given, Continuation((), ref))

    def message(self, node: TaskNode, given: Given, then: Continuation) -> Message:
        args = list(node.args)
        gather = None
        if given is not None and not node.immutable:
            if isinstance(given, Gather):
                gather = given
            else:
                args.insert(0, given.value)
        flow = None
        if then.chain or then.chord or node.link or node.link_error or gather or self.failed:
            flow = Flow(
                chain=then.chain,
                chord=then.chord,
                link=node.link,
                link_error=node.link_error,
                gather=gather,
                failed=self.failed,
            )
            depth = depth_of(flow, UNLIMITED)
            if depth > MAX_DEPTH:
                raise WorkflowTooDeep(depth, MAX_DEPTH)
        now = self.now
        eta = node.eta
        if eta is None and node.countdown is not None:
            eta = now + node.countdown
        expires = node.expires_at
        if expires is None and node.expires is not None:
            expires = now + node.expires
        return Message(
            id=node.id,
            task=node.task,
            args=args,
            kwargs=dict(node.kwargs),
            queue=node.queue,
            eta=eta,
            expires=expires,
            priority=node.priority,
            headers=dict(node.headers),
            created_at=now,
            origin=self.origin,
            flow=flow,
        )
