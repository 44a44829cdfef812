"""What a workflow's signatures become when it is sent: wire nodes, every id fixed.

    Signature._node(builder, single, result_id) ─► TaskNode, ChainNode, GroupNode, ChordNode
    (forkq.canvas.signature), through `Builder` for what every task node needs:

    - its options: the signature's own, then those of the workflows around it (`set()`, or
      given to `apply_async`), then the task's (queue, priority, expires, when this app has
      the task), then the app's default queue. A workflow's countdown and eta go only to the
      tasks that start it (`starting`), as do the arguments given to its `apply_async`;
    - its id: a chord member's result id is derived from the chord's (`flow.member_ids`),
      unless the member's signature sets its own `task_id`; every other is a new uuid.

Then `check_calls` checks each call against its task's signature, with a stand-in for the
result a task will be given (a later step, a chord's body, a callback).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from forkq.envelope import new_task_id
from forkq.exceptions import ArgumentError, ConfigurationError
from forkq.flow import (
    COLLECT_TASK,
    ChainNode,
    ChordNode,
    GroupNode,
    Node,
    TaskNode,
    task_nodes,
)
from forkq.sending import to_timestamp

if TYPE_CHECKING:
    from forkq.app import Forkq

#: What `set()` and a workflow's `apply_async` take (Celery's names); anything else is refused.
OPTIONS = frozenset(
    {"queue", "countdown", "eta", "priority", "expires", "task_id", "headers", "immutable"}
)
ENTRY_ONLY = ("countdown", "eta", "task_id")  # a workflow's: for the tasks that start it
_RESULT = object()  # the stand-in for a result a task will be given, when checking its call


def checked_options(where: Callable[[], str], options: Mapping[str, Any]) -> dict[str, Any]:
    """The options, or a `ConfigurationError` that names `where()` (made only then: a
    signature's text costs more than the check)."""
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"{where()}: unknown option{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(unknown)}; supported: {', '.join(sorted(OPTIONS))}"
        )
    if options.get("countdown") is not None and options.get("eta") is not None:
        raise ConfigurationError(f"{where()}: give countdown or eta, not both")
    return dict(options)


class Builder:
    """One workflow's building: the app whose tasks it names, and the options its tasks take
    where their signatures set none (those of the workflows around them)."""

    def __init__(self, app: Forkq, defaults: Mapping[str, Any] | None = None) -> None:
        self.app = app
        self.defaults = {k: v for k, v in (defaults or {}).items() if k not in ENTRY_ONLY}

    def inner(self, options: Mapping[str, Any]) -> Builder:
        """The builder of a workflow inside this one, with options of its own."""
        return self if not options else Builder(self.app, {**self.defaults, **options})

    def new_id(self) -> str:
        return new_task_id()

    def task(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        options: Mapping[str, Any],
        *,
        immutable: bool,
        result_id: str | None,
        link: tuple[Node, ...] = (),
        link_error: tuple[Node, ...] = (),
    ) -> TaskNode:
        o = {**self.defaults, **options}
        task = self.app.tasks.get(name)
        own = None if task is None else task.options
        expires = o.get("expires", None if own is None else own.expires)
        priority = o.get("priority")
        return TaskNode(
            id=o.get("task_id") or result_id or self.new_id(),
            task=name,
            queue=o.get("queue") or (own.queue if own else None) or self._default_queue(),
            args=args,
            kwargs=dict(kwargs),
            priority=int((own.priority if own else 0) if priority is None else priority),
            countdown=None if o.get("countdown") is None else float(o["countdown"]),
            eta=to_timestamp(o.get("eta")),
            expires=float(expires) if isinstance(expires, (int, float)) else None,
            expires_at=to_timestamp(expires) if isinstance(expires, datetime) else None,
            headers=dict(o.get("headers") or {}),
            immutable=immutable,
            link=link,
            link_error=link_error,
        )

    def collect(self, result_id: str | None, header: tuple[Node, ...]) -> TaskNode:
        """The body of a group made a chord to end in one result: it returns the list of the
        members' results. It goes where the header's first task goes."""
        first = next(iter(task_nodes(header)), None)
        return TaskNode(
            id=result_id or self.new_id(),
            task=COLLECT_TASK,
            queue=self._default_queue() if first is None else first.queue,
            priority=0 if first is None else first.priority,
        )

    def _default_queue(self) -> str:
        return self.app.settings.default_queue


def starting(
    node: Node,
    options: Mapping[str, Any],
    args: tuple[Any, ...] = (),
    kwargs: Mapping[str, Any] | None = None,
) -> Node:
    """`node` with the tasks that start it given a workflow's countdown or eta (where they
    set none) and its arguments (before their own, unless they are immutable)."""
    countdown, eta = options.get("countdown"), to_timestamp(options.get("eta"))
    if countdown is None and eta is None and not args and not kwargs:
        return node

    def start(task: TaskNode) -> TaskNode:
        if task.countdown is None and task.eta is None:
            task = msgspec.structs.replace(
                task, countdown=None if countdown is None else float(countdown), eta=eta
            )
        if (args or kwargs) and not task.immutable:
            task = msgspec.structs.replace(
                task, args=(*args, *task.args), kwargs={**(kwargs or {}), **task.kwargs}
            )
        return task

    return _map_starts(node, start)


def _map_starts(node: Node, start: Callable[[TaskNode], TaskNode]) -> Node:
    if isinstance(node, TaskNode):
        return start(node)
    if isinstance(node, ChainNode):
        if not node.steps:
            return node
        return ChainNode(steps=(_map_starts(node.steps[0], start), *node.steps[1:]))
    if isinstance(node, GroupNode):
        return GroupNode(id=node.id, members=tuple(_map_starts(m, start) for m in node.members))
    if not node.header:
        return ChordNode(id=node.id, header=(), body=_map_starts(node.body, start))
    header = tuple(_map_starts(m, start) for m in node.header)
    return ChordNode(id=node.id, header=header, body=node.body)


def check_calls(app: Forkq, root: Node) -> None:
    """Check each call of a task this app has against its signature (`typing`): a task that
    will be given a result (a later step, a chord's body, a callback) with a stand-in for it."""
    starts = {id(task) for task in _starts(root)}
    stack: list[Node] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, TaskNode):
            stack.extend((*node.link, *node.link_error))
            task = app.tasks.get(node.task)
            if task is not None and task.options.unique_for is not None:
                raise ConfigurationError(
                    f"task {task.name} is unique (unique_for), and its lock is taken only when "
                    "it is sent on its own: call its delay() or apply_async(), not a "
                    "signature's or a workflow's"
                )
            if task is None or not task.options.typing or task.signature_check is None:
                continue
            given = id(node) not in starts and not node.immutable
            args = (_RESULT, *node.args) if given else node.args
            try:
                task.signature_check.check(args, node.kwargs)
            except ArgumentError as exc:
                if not given:
                    raise
                raise ArgumentError(f"{exc} (given a result first: use si() for none)") from None
        elif isinstance(node, ChainNode):
            stack.extend(node.steps)
        elif isinstance(node, GroupNode):
            stack.extend(node.members)
        else:
            stack.extend((*node.header, node.body))


def _starts(node: Node) -> list[TaskNode]:
    found: list[TaskNode] = []

    def note(task: TaskNode) -> TaskNode:
        found.append(task)
        return task

    _map_starts(node, note)
    return found
