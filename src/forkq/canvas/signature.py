"""Signatures, Celery's canvas API: a task call to make later, and the workflows made of them
(here Signature and chain; group and chord in forkq.canvas.groups).

    add.s(2, 2)                            a call; a step before it gives its result first
    add.si(2, 2)                           immutable: given no result
    add.s(1) | mul.s(3), chain(a, b, c)    one after another, each given the result before
    group(a, b), group(generator)          side by side
    chord(header, body), chord(header)(body)
                                           the header as a group, then the body, given the
                                           list of the header's results in order
    .apply_async() / .delay() / workflow()
        ─► build (forkq.canvas.build): wire nodes, every task id fixed, calls checked
        ─► handles (forkq.canvas.results): AsyncResult with .parent, GroupResult
        ─► messages (forkq.canvas.dispatch), sent with one publish_many

Celery's normal forms apply: a group followed by more steps in a chain is a chord, and a group
whose result must be one value (a chord's member, the last step of a chain that is one) is a
chord whose body (forkq.collect) returns the members' results as a list.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from forkq.canvas.build import Builder, check_calls, checked_options, starting
from forkq.canvas.dispatch import UNLIMITED, chained, messages
from forkq.canvas.results import GroupResult, handle_of
from forkq.exceptions import ConfigurationError, WorkflowTooDeep
from forkq.flow import MAX_DEPTH, Node, depth_of

if TYPE_CHECKING:
    from forkq.app import Forkq
    from forkq.result import AsyncResult
    from forkq.task import Task


class Signature:
    """A call of a task, made later (Celery's `signature`): `task.s(...)`, `task.si(...)`,
    `task.signature(args, kwargs, **options)`, `app.signature(name, ...)`."""

    def __init__(
        self,
        task: str | Task[..., Any],
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        *,
        immutable: bool = False,
        app: Forkq | None = None,
        **more_options: Any,
    ) -> None:
        if isinstance(task, str):
            self.task = task
        else:
            self.task, app = task.name, app or task.app
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.options: dict[str, Any] = {}
        self.immutable = immutable
        self.callbacks: list[Signature] = []
        self.errbacks: list[Signature] = []
        self._app = app
        self.set(**{**(options or {}), **more_options})

    @property
    def app(self) -> Forkq:
        if self._app is None:
            raise ConfigurationError(
                f"{self!r} belongs to no app: make it with task.s() or app.signature()"
            )
        return self._app

    def __repr__(self) -> str:
        shown = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.task}({', '.join(shown)}){'!' if self.immutable else ''}"

    def set(self, **options: Any) -> Signature:
        """Set options for the call: queue, countdown, eta, priority, expires, task_id,
        headers, immutable. Returns the signature itself."""
        given = checked_options(lambda: f"signature {self!r}", options)
        if "immutable" in given:
            self.immutable = bool(given.pop("immutable"))
        if given.get("countdown") is not None:
            self.options.pop("eta", None)
        if given.get("eta") is not None:
            self.options.pop("countdown", None)
        self.options.update(given)
        return self

    def set_immutable(self, immutable: bool) -> None:
        self.immutable = immutable

    def link(self, callback: Signature) -> Signature:
        """On success, `callback` is sent with the result put first among its arguments
        (unless immutable). Returns `callback`, as Celery's does."""
        self.callbacks.append(callback)
        return callback

    def link_error(self, errback: Signature) -> Signature:
        """On failure, `errback` is sent with the failed task's id as its one argument
        (unless immutable): JSON carries no exception objects. Returns `errback`."""
        self.errbacks.append(errback)
        return errback

    def on_error(self, errback: Signature) -> Signature:
        """`link_error(errback)`, returning this signature (for chaining)."""
        self.link_error(errback)
        return self

    def clone(
        self, args: Iterable[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> Signature:
        """A copy, with `args` put before its own (unless immutable), `kwargs` and `options`
        merged into its own."""
        twin = copy.copy(self)
        twin.options = dict(self.options)
        twin.callbacks, twin.errbacks = list(self.callbacks), list(self.errbacks)
        if not self.immutable:
            twin.args = (*args, *self.args)
            twin.kwargs = {**self.kwargs, **(kwargs or {})}
        return twin.set(**options)

    def __or__(self, other: Signature) -> chain:
        if not isinstance(other, Signature):
            return NotImplemented
        return chain(self, other)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task here and now, as a plain call (a workflow's call sends it)."""
        task = self.app.tasks[self.task]
        if self.immutable:
            return task(*self.args, **self.kwargs)
        return task(*args, *self.args, **{**self.kwargs, **kwargs})

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult[Any] | GroupResult:
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        link: Signature | Iterable[Signature] | None = None,
        link_error: Signature | Iterable[Signature] | None = None,
        **options: Any,
    ) -> AsyncResult[Any] | GroupResult:
        """Send it (a workflow: all the messages that start it, in one round trip), with
        `args` before the arguments of the tasks that start it and `options` for every task
        (countdown and eta: those that start it; task_id: the id of its result)."""
        signature = self
        if link is not None or link_error is not None:
            signature = self.clone()
            for callback in _signatures(link):
                signature.link(callback)
            for errback in _signatures(link_error):
                signature.link_error(errback)
        return signature._send(tuple(args), kwargs, options)

    def _send(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any] | None, options: Mapping[str, Any]
    ) -> AsyncResult[Any] | GroupResult:
        app = self.app
        given = checked_options(lambda: f"apply_async of {self!r}", options)
        depth = _depth(self)
        if depth > MAX_DEPTH:
            raise WorkflowTooDeep(depth, MAX_DEPTH)
        node = self._node(Builder(app, given), False, given.get("task_id"))
        node = starting(node, given, args, kwargs)
        depth = depth_of(node, UNLIMITED)
        if depth > MAX_DEPTH:
            raise WorkflowTooDeep(depth, MAX_DEPTH)
        check_calls(app, node)
        handle = handle_of(app, node)
        app.publish_many(messages(node))
        return handle

    def _parts(self) -> list[Signature]:
        """The signatures this one is made of (for a task: its callbacks)."""
        return [*self.callbacks, *self.errbacks]

    def _header_of(
        self, b: Builder, body: Node | None, result_id: str | None = None
    ) -> Node | None:
        """This signature as a chord's header with `body` (None: one that collects the
        list), or None if it is not a group (forkq.canvas.groups)."""
        return None

    def _node(self, b: Builder, single: bool, result_id: str | None) -> Node:
        """This signature as wire nodes; `single`: it must end in one result, `result_id`
        the id of that result (a chord member's, or the workflow's task_id)."""
        callbacks = Builder(b.app)  # a callback starts a workflow of its own
        return b.task(
            self.task,
            self.args,
            self.kwargs,
            self.options,
            immutable=self.immutable,
            result_id=result_id,
            link=tuple(_root(c, callbacks) for c in self.callbacks),
            link_error=tuple(_root(e, callbacks) for e in self.errbacks),
        )


class chain(Signature):
    """Tasks one after another, each given the result of the one before: `chain(a, b, c)`,
    `chain([a, b, c])` or `a | b | c`. Its result is its last task's, with `.parent`."""

    def __init__(self, *tasks: Signature | Iterable[Signature], app: Forkq | None = None) -> None:
        self.tasks: list[Signature] = flat(tasks, chains=True)
        super().__init__("chain", app=app or app_of(self.tasks))

    def __repr__(self) -> str:
        return " | ".join(repr(t) for t in self.tasks)

    def __or__(self, other: Signature) -> chain:
        if not isinstance(other, Signature):
            return NotImplemented
        return chain(*self.tasks, other, app=self._app)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    def link(self, callback: Signature) -> Signature:
        return self._last().link(callback)

    def link_error(self, errback: Signature) -> Signature:
        """On the failure of any of its tasks (a task's failure sends the errbacks of the
        tasks after it, which will not run)."""
        return self._last().link_error(errback)

    def clone(
        self, args: Iterable[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> chain:
        twin = chain(*[t.clone() for t in self.tasks], app=self._app)
        if args or kwargs:
            twin.tasks[0] = twin.tasks[0].clone(args, kwargs)
        twin.options = dict(self.options)
        twin.set(**options)
        return twin

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult[Any]:
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        link: Signature | Iterable[Signature] | None = None,
        link_error: Signature | Iterable[Signature] | None = None,
        **options: Any,
    ) -> AsyncResult[Any]:
        """Its last task's result, with `.parent` the step before's (a GroupResult for a
        group)."""
        sent = super().apply_async(args, kwargs, link=link, link_error=link_error, **options)
        return cast("AsyncResult[Any]", sent)

    def _last(self) -> Signature:
        if not self.tasks:
            raise ConfigurationError("an empty chain has no task to link")
        return self.tasks[-1]

    def _parts(self) -> list[Signature]:
        return list(self.tasks)

    def _node(self, b: Builder, single: bool, result_id: str | None) -> Node:
        if not self.tasks:
            raise ConfigurationError("a chain needs at least one task")
        inner = b.inner(self.options)
        last = len(self.tasks) - 1
        tail: list[Node] = []  # built from the end: a group before other steps is a chord
        for i in range(last, -1, -1):
            step = self.tasks[i]
            header = step._header_of(inner, joined(tail)) if i < last else None
            if header is not None:  # a group before other steps: a chord, the rest its body
                tail = [header]
            else:
                tail.insert(
                    0, step._node(inner, single and i == last, result_id if i == last else None)
                )
        return starting(joined(tail), self.options)


def joined(nodes: list[Node]) -> Node:
    return chained(nodes[0], tuple(nodes[1:])) if len(nodes) > 1 else nodes[0]


def _root(signature: Signature, b: Builder) -> Node:
    """A callback: a workflow of its own."""
    return starting(signature._node(b, False, None), signature.options)


def _signatures(given: Signature | Iterable[Signature] | None) -> list[Signature]:
    if given is None:
        return []
    return [given] if isinstance(given, Signature) else list(given)


def flat(
    tasks: tuple[Signature | Iterable[Signature], ...], chains: bool = False
) -> list[Signature]:
    """The tasks given (varargs, or one iterable); in a chain, those of a chain in it with no
    options of its own in its place (a chain of chains is one chain; a group in a group stays
    one member, whose value is the list of its own). Iterative: no nesting makes it recurse."""
    given: list[Any] = list(tasks)
    if len(given) == 1 and not isinstance(given[0], Signature):
        given = list(given[0])
    flat: list[Signature] = []
    stack = list(reversed(given))
    while stack:
        item = stack.pop()
        if not isinstance(item, Signature):
            raise ConfigurationError(f"a workflow is made of signatures (task.s()), not {item!r}")
        if chains and isinstance(item, chain) and not item.options:
            stack.extend(reversed(item._parts()))
        else:
            flat.append(item)
    return flat


def app_of(tasks: list[Signature]) -> Forkq | None:
    return next((t._app for t in tasks if t._app is not None), None)


def _depth(signature: Signature) -> int:
    """How deep the workflow nests, as built (chains of chains flattened), counted without
    recursion: a workflow nested too deep is refused before it is built."""
    deepest = 0
    stack: list[tuple[Signature, int]] = [(signature, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((part, level + 1) for part in current._parts())
    return deepest
