"""The workflow a message carries (`Message.flow`), as it travels, and the checks a worker
makes of it. Imports nothing of forkq: `forkq.envelope` decodes it.

A workflow is a tree of nodes, every task node with its task id fixed when the workflow is
sent, so that every result handle exists before anything runs:

    TaskNode   one call: the task, its arguments and options, its link / link_error callbacks
    ChainNode  steps run one after another, each given the result of the one before
    GroupNode  members run side by side
    ChordNode  a group (the header) whose results, gathered in order, are given to the body

A message carries what follows its own task:

    Flow.chain       the steps after this one: the next is sent with this task's result put
                     first among its arguments (unless it is immutable); the rest travel on
                     with it
    Flow.chord       on the last step of a chord header's member: the ChordRef. The member's
                     vote is counted by its task id, and the body is sent once, when the last
                     vote lands (or its failure, at the first failure)
    Flow.link        on success, each is sent with the result
    Flow.link_error  on failure, each is sent with the failed task's id as its one argument
                     (Celery's old-style errback: JSON carries no exception objects)
    Flow.gather      on a chord body: whose results the worker fetches, with one get_many,
                     and puts first among the arguments as one list
    Flow.failed      on a message sent only to fail: a task upstream failed (a member of the
                     chord this one is the body of); it does not run, and fails with that error

The members of a chord's header have result ids derived from the chord's id (`member_ids`),
so that a member's ChordRef, and the body's Gather, need not list every member: a chord of
n members sends n messages of constant size rather than n of size n.
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

MAX_DEPTH = 16  # levels of nodes: a workflow or a message's flow nested deeper is refused
MAX_CHORD_SIZE = 1_000_000  # members of one chord's header

# The tasks every app registers (forkq.canvas.builtins), which workflows send by name.
COLLECT_TASK = "forkq.collect"  # a chord's body that returns its header's results as a list
STARMAP_TASK = "forkq.starmap"  # a task called once per argument tuple, in one message


class TaskNode(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag="task"):
    """One call. `countdown` and `expires` count from when this step is sent; `eta` and
    `expires_at` are Unix times."""

    id: str
    task: str
    queue: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    priority: int = 0
    countdown: float | None = None
    eta: float | None = None
    expires: float | None = None
    expires_at: float | None = None
    headers: dict[str, str] = {}
    immutable: bool = False  # given no result of the step before it (`si()`)
    link: tuple[Node, ...] = ()
    link_error: tuple[Node, ...] = ()


class ChainNode(msgspec.Struct, frozen=True, kw_only=True, tag="chain"):
    steps: tuple[Node, ...]


class GroupNode(msgspec.Struct, frozen=True, kw_only=True, tag="group"):
    id: str
    members: tuple[Node, ...]


class ChordNode(msgspec.Struct, frozen=True, kw_only=True, tag="chord"):
    id: str
    header: tuple[Node, ...]
    body: Node


Node = Union[TaskNode, ChainNode, GroupNode, ChordNode]  # noqa: UP007 - msgspec resolves it


class ChordRef(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A chord, as its header's members carry it: its id and size, and its body (with what
    follows the chord, chained after it); `chord` when the body's result is itself a member
    of an outer chord. `ids`: the members' result ids, when they are not `member_ids`."""

    id: str
    size: int
    body: Node
    chord: ChordRef | None = None
    ids: tuple[str, ...] = ()


class Gather(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The results a chord's body is given: those of its header's members, in order."""

    id: str
    size: int
    ids: tuple[str, ...] = ()


class Failed(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The failure of a task upstream, which a task downstream fails with without running."""

    task_id: str
    exc_type: str
    exc_module: str | None = None
    exc_message: str = ""


class Flow(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    chain: tuple[Node, ...] = ()
    chord: ChordRef | None = None
    link: tuple[Node, ...] = ()
    link_error: tuple[Node, ...] = ()
    gather: Gather | None = None
    failed: Failed | None = None


def member_ids(chord_id: str, size: int, ids: tuple[str, ...] = ()) -> list[str]:
    """The result ids of a chord's members, in order: `ids` when given, else derived."""
    return list(ids) if ids else [f"{chord_id}-{i}" for i in range(size)]


def result_id(node: Node) -> str | None:
    """The id of the one result a node ends in (a group has none: it ends in many)."""
    while True:
        if isinstance(node, TaskNode):
            return node.id
        if isinstance(node, ChordNode):
            node = node.body
        elif isinstance(node, ChainNode) and node.steps:
            node = node.steps[-1]
        else:
            return None


Item = Union[Node, ChordRef, Flow]  # noqa: UP007 - the things depth_of walks


def depth_of(item: Item, limit: int = MAX_DEPTH) -> int:
    """How many levels of nodes (and chord references) `item` nests, a Flow counting for
    none; beyond `limit` the walk stops, and returns `limit + 1`. Iterative: a hostile
    message cannot make it recurse."""
    deepest = 0
    stack: list[tuple[Item, int]] = [(item, 0 if isinstance(item, Flow) else 1)]
    while stack:
        current, level = stack.pop()
        if level > limit:
            return limit + 1
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in _children(current))
    return deepest


def _children(item: Item) -> tuple[Item, ...]:
    if isinstance(item, TaskNode):
        return (*item.link, *item.link_error)
    if isinstance(item, ChainNode):
        return item.steps
    if isinstance(item, GroupNode):
        return item.members
    if isinstance(item, ChordNode):
        return (*item.header, item.body)
    if isinstance(item, ChordRef):
        return (item.body,) if item.chord is None else (item.body, item.chord)
    chord: tuple[Item, ...] = () if item.chord is None else (item.chord,)
    return (*item.chain, *chord, *item.link, *item.link_error)


def flow_problem(flow: Flow) -> str | None:
    """What makes a received flow unfit to act on, or None: nested past MAX_DEPTH, a chord of
    impossible size, a task node without id, name or queue. (Its size is bounded by the
    message's, `max_message_bytes`.)"""
    depth = depth_of(flow)
    if depth > MAX_DEPTH:
        return f"workflow nested more than {MAX_DEPTH} levels deep (the limit)"
    stack: list[Item | Gather] = [flow] if flow.gather is None else [flow, flow.gather]
    while stack:
        current = stack.pop()
        if isinstance(current, (ChordRef, Gather)):
            if not 0 <= current.size <= MAX_CHORD_SIZE:
                return f"chord {current.id!r} of {current.size} members (at most {MAX_CHORD_SIZE})"
            if current.ids and len(current.ids) != current.size:
                return f"chord {current.id!r} of {current.size} members lists {len(current.ids)}"
        if isinstance(current, TaskNode) and not (current.id and current.task and current.queue):
            return "a workflow's task without an id, a task name or a queue"
        if not isinstance(current, Gather):
            stack.extend(_children(current))
    return None


def task_nodes(nodes: tuple[Node, ...]) -> list[TaskNode]:
    """The task nodes of `nodes` and all they nest (not their callbacks), in order."""
    found: list[TaskNode] = []
    stack = list(reversed(nodes))
    while stack:
        node = stack.pop()
        if isinstance(node, TaskNode):
            found.append(node)
        elif isinstance(node, ChainNode):
            stack.extend(reversed(node.steps))
        elif isinstance(node, GroupNode):
            stack.extend(reversed(node.members))
        else:
            stack.append(node.body)
            stack.extend(reversed(node.header))
    return found
