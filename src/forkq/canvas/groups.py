"""Groups and chords (Celery's): tasks side by side, and a group whose results, gathered in
order, are given to a body. See forkq.canvas.signature for the rest of the API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from forkq.canvas.build import Builder, starting
from forkq.canvas.results import GroupResult
from forkq.canvas.signature import Signature, app_of, flat
from forkq.exceptions import ConfigurationError
from forkq.flow import ChordNode, GroupNode, Node

if TYPE_CHECKING:
    from forkq.app import Forkq
    from forkq.result import AsyncResult


class group(Signature):
    """Tasks side by side: `group(a, b)`, `group([a, b])`, `group(s for s in ...)`. Its
    result is a GroupResult; followed by more steps in a chain, it is a chord's header."""

    def __init__(self, *tasks: Signature | Iterable[Signature], app: Forkq | None = None) -> None:
        self.tasks: list[Signature] = flat(tasks)
        super().__init__("group", app=app or app_of(self.tasks))

    def __repr__(self) -> str:
        return f"group([{', '.join(repr(t) for t in self.tasks)}])"

    def __call__(self, *args: Any, **kwargs: Any) -> GroupResult:
        return self.apply_async(args, kwargs)

    def __len__(self) -> int:
        return len(self.tasks)

    def link(self, callback: Signature) -> Signature:
        """Each member is sent `callback` with its own result."""
        for task in self.tasks:
            task.link(callback)
        return callback

    def link_error(self, errback: Signature) -> Signature:
        """A member that fails sends `errback` with its id."""
        for task in self.tasks:
            task.link_error(errback)
        return errback

    def clone(
        self, args: Iterable[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> group:
        twin = group(*[t.clone(args, kwargs) for t in self.tasks], app=self._app)
        twin.options = dict(self.options)
        twin.set(**options)
        return twin

    def delay(self, *args: Any, **kwargs: Any) -> GroupResult:
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        link: Signature | Iterable[Signature] | None = None,
        link_error: Signature | Iterable[Signature] | None = None,
        **options: Any,
    ) -> GroupResult:
        """Sends every member in one round trip: a GroupResult of their results."""
        sent = super().apply_async(args, kwargs, link=link, link_error=link_error, **options)
        return cast(GroupResult, sent)

    def _parts(self) -> list[Signature]:
        return list(self.tasks)

    def _node(self, b: Builder, single: bool, result_id: str | None) -> Node:
        if single:  # its result must be one value: a chord whose body collects the list
            return self._header_of(b, None, result_id)
        gid = result_id or b.new_id()
        members = self._members(b.inner(self.options), gid)
        return starting(GroupNode(id=gid, members=members), self.options)

    def _header_of(self, b: Builder, body: Node | None, result_id: str | None = None) -> Node:
        """This group as a chord's header, with `body` (None: one that collects the list)."""
        cid = b.new_id()
        header = self._members(b.inner(self.options), cid)
        node = ChordNode(id=cid, header=header, body=body or b.collect(result_id, header))
        return starting(node, self.options)

    def _members(self, b: Builder, parent_id: str) -> tuple[Node, ...]:
        return tuple(t._node(b, True, f"{parent_id}-{i}") for i, t in enumerate(self.tasks))


class chord(Signature):
    """A group (the header), then the body, given the list of the header's results in order:
    `chord(header, body)`, or `chord(header)(body)` to send it. Its result is the body's,
    whose `.parent` is the header's GroupResult. A member that fails fails the chord: the
    body fails with that member's error, and its `link_error` callbacks are sent."""

    def __init__(
        self,
        header: group | Iterable[Signature],
        body: Signature | None = None,
        app: Forkq | None = None,
    ) -> None:
        self.header = header if isinstance(header, group) else group(header, app=app)
        self.body = body
        super().__init__("chord", app=app or self.header._app or (body._app if body else None))

    @property
    def tasks(self) -> list[Signature]:
        return self.header.tasks

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"

    def __call__(self, *args: Any, **kwargs: Any) -> AsyncResult[Any]:
        """`chord(header)(body)`: send it with this body (or with the body it has)."""
        if args and isinstance(args[0], Signature):
            self.body, args = args[0], args[1:]
            self._app = self._app or self.body._app
        return self.apply_async(args, kwargs)

    def link(self, callback: Signature) -> Signature:
        return self._body().link(callback)

    def link_error(self, errback: Signature) -> Signature:
        return self._body().link_error(errback)

    def clone(
        self, args: Iterable[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> chord:
        twin = chord(self.header.clone(args, kwargs), self.body and self.body.clone(), self._app)
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
        """The body's result, with `.parent` the header's GroupResult."""
        sent = super().apply_async(args, kwargs, link=link, link_error=link_error, **options)
        return cast("AsyncResult[Any]", sent)

    def _body(self) -> Signature:
        if self.body is None:
            raise ConfigurationError(f"{self!r} has no body: chord(header, body)")
        return self.body

    def _parts(self) -> list[Signature]:
        return [*self.header.tasks, self._body()]

    def _node(self, b: Builder, single: bool, result_id: str | None) -> Node:
        inner = b.inner(self.options)
        body = self._body()._node(inner, single, result_id)
        return starting(self.header._header_of(inner, body), self.options)
