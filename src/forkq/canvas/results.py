"""The results of workflows: the handles a sent workflow gives back, and gathering many
results at once.

    handle_of(node): TaskNode ─► AsyncResult; ChainNode ─► its last step's, each step's
        `.parent` the one before; GroupNode ─► GroupResult; ChordNode ─► its body's, whose
        `.parent` is the header's GroupResult

    gather(app, handles):   the ids not ready ─► backend.get_many (one round trip) ─► values
                            any left ─► backend.wait(the last not ready, the time left)
                            (it blocks until that one is ready: no polling) ─► again

Results are read in batches: one `get_many` per wake-up, whatever their number. The wait is
on the last one not ready, which in a queue drained in order is about the last to finish, so
a batch that finishes in order is gathered in a few round trips.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Union

from forkq.exceptions import BackendUnavailable, BackendUnreachable, ResultTimeout, TaskFailed
from forkq.flow import ChainNode, GroupNode, Node, TaskNode
from forkq.outage import Outage
from forkq.result import AsyncResult, ResultHandle, decode_record
from forkq.states import FAILURE, READY_STATES, SUCCESS

if TYPE_CHECKING:
    from forkq.app import Forkq

log = logging.getLogger("forkq.client")

Gatherable = Union[AsyncResult[Any], "GroupResult"]


class GroupResult:
    """The results of a group's members, in order (Celery's GroupResult). Each call reads
    them all in one round trip (`ResultBackend.get_many`)."""

    def __init__(
        self,
        group_id: str,
        results: Sequence[AsyncResult[Any]],
        app: Forkq,
        parent: ResultHandle | None = None,
    ) -> None:
        self.id = group_id
        self.results = list(results)
        self.app = app
        self.parent = parent

    def __repr__(self) -> str:
        return f"<GroupResult {self.id} [{', '.join(r.id for r in self.results)}]>"

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[AsyncResult[Any]]:
        return iter(self.results)

    def __getitem__(self, index: int) -> AsyncResult[Any]:
        return self.results[index]

    @property
    def children(self) -> list[AsyncResult[Any]]:
        return self.results

    def _states(self) -> list[str | None]:
        stored = self.app.backend.get_many([r.id for r in self.results])
        return [None if s is None else s.state for s in stored]

    def ready(self) -> bool:
        """Whether every member has finished (succeeded or failed)."""
        return all(state in READY_STATES for state in self._states())

    def waiting(self) -> bool:
        """Whether some member has not finished."""
        return not self.ready()

    def successful(self) -> bool:
        """Whether every member succeeded."""
        return all(state == SUCCESS for state in self._states())

    def failed(self) -> bool:
        """Whether some member failed."""
        return any(state == FAILURE for state in self._states())

    def completed_count(self) -> int:
        """How many members succeeded."""
        return sum(state == SUCCESS for state in self._states())

    def get(self, timeout: float | None = None, propagate: bool = True) -> list[Any]:
        """The members' values, in order, once all are ready: see `gather`."""
        return gather(self.app, self.results, timeout, propagate)

    def join(self, timeout: float | None = None, propagate: bool = True) -> list[Any]:
        """The same as `get()` (Celery's other name for it)."""
        return self.get(timeout, propagate)

    def forget(self) -> None:
        for result in self.results:
            result.forget()

    def revoke(self, terminate: bool = False, signal: str = "SIGTERM") -> None:
        """Revoke every step of every member (`Forkq.revoke`): a member that is a chain has
        each of its steps revoked, not only the last whose handle the group holds, so none
        that did not run yet ever does; the group's `get()` raises a member's `TaskRevoked`,
        and a chord over this group fails its body with an error that says so."""
        self.app.revoke(step_ids(self.results), terminate=terminate, signal=signal)


def step_ids(handles: Iterable[ResultHandle]) -> list[str]:
    """The task ids of the workflows that end in `handles`, each handle's first: every step
    back through the `.parent` links (a chord's header: each of its members')."""
    ids: dict[str, None] = {}
    todo = list(handles)
    for handle in todo:  # grows as it goes: each handle's parent and members follow it
        if isinstance(handle, GroupResult):
            todo.extend(handle.results)
            parent = handle.parent
        elif isinstance(handle, AsyncResult):
            ids[handle.id] = None
            parent = handle.parent
        else:
            continue
        if parent is not None:
            todo.append(parent)
    return list(ids)


def gather(
    app: Forkq,
    handles: Iterable[Gatherable],
    timeout: float | None = None,
    propagate: bool = True,
) -> list[Any]:
    """The value of each handle, in order (a GroupResult's: the list of its values), once
    all are ready, waiting at most `timeout` seconds in all (`ResultTimeout`). A failure
    raises its `TaskFailed` as soon as it is read (with propagate=False: it takes the
    failure's place in the list). An unreachable backend is ridden out as by `get()`."""
    given = list(handles)
    leaves: list[AsyncResult[Any]] = []
    spans: list[tuple[int, int] | int] = []
    for handle in given:
        if isinstance(handle, GroupResult):
            spans.append((len(leaves), len(leaves) + len(handle.results)))
            leaves.extend(handle.results)
        else:
            spans.append(len(leaves))
            leaves.append(handle)
    values = _Gathering(app, leaves, timeout, propagate).values()
    return [values[s] if isinstance(s, int) else values[s[0] : s[1]] for s in spans]


class _Gathering:
    def __init__(
        self, app: Forkq, leaves: list[AsyncResult[Any]], timeout: float | None, propagate: bool
    ) -> None:
        self.backend = app.backend
        self.leaves = leaves
        self.limit = float("inf") if timeout is None else timeout
        self.deadline = time.monotonic() + self.limit
        self.propagate = propagate
        self.found: list[Any] = [None] * len(leaves)
        self.pending = list(range(len(leaves)))

    def values(self) -> list[Any]:
        outage = Outage("result backend", log)
        while True:
            try:
                self.read()
                if not self.pending:
                    return self.found
                self.wait()
            except BackendUnavailable as exc:  # a restarting server: ride it out
                pause = outage.failed(exc)
                if time.monotonic() + pause >= self.deadline:
                    down = time.monotonic() - (outage.since or time.monotonic())
                    first = self.leaves[self.pending[0]].id
                    raise BackendUnreachable(first, self.limit, down, str(exc)) from exc
                time.sleep(pause)
                continue
            outage.succeeded()

    def read(self) -> None:
        """One round trip: the records of those not ready yet."""
        stored = self.backend.get_many([self.leaves[i].id for i in self.pending])
        still: list[int] = []
        for index, one in zip(self.pending, stored, strict=True):
            if one is None or one.state not in READY_STATES:
                still.append(index)
                continue
            record = decode_record(one.payload)
            if record.state == SUCCESS:
                self.found[index] = record.result
                continue
            failure: TaskFailed = self.leaves[index].failure(record)
            if self.propagate:
                raise failure
            self.found[index] = failure
        self.pending = still

    def wait(self) -> None:
        """Until the last not ready is (or the time is up: `ResultTimeout`)."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            first = self.leaves[self.pending[0]]
            left = f"{len(self.pending)} of {len(self.leaves)} results not ready"
            hint = first.timeout_hint()
            raise ResultTimeout(first.id, self.limit, f"{left}; {hint}" if hint else left)
        self.backend.wait(self.leaves[self.pending[-1]].id, min(60.0, remaining))


def handle_of(app: Forkq, node: Node) -> AsyncResult[Any] | GroupResult:
    """The handle of a workflow's result (see the module's docstring)."""
    return _handle(app, node, None)


def _handle(app: Forkq, node: Node, parent: ResultHandle | None) -> AsyncResult[Any] | GroupResult:
    if isinstance(node, TaskNode):
        result: AsyncResult[Any] = AsyncResult(node.id, app, name=node.task, queue=node.queue)
        result.parent = parent
        return result
    if isinstance(node, ChainNode):
        handle: AsyncResult[Any] | GroupResult | None = None
        for step in node.steps:
            handle = _handle(app, step, parent if handle is None else handle)
        if handle is None:
            raise ValueError("an empty chain has no result")
        return handle
    if isinstance(node, GroupNode):
        return GroupResult(node.id, _members(app, node.members), app, parent)
    header = GroupResult(node.id, _members(app, node.header), app, parent)
    return _handle(app, node.body, header)


def _members(app: Forkq, nodes: tuple[Node, ...]) -> list[AsyncResult[Any]]:
    members = [_handle(app, node, None) for node in nodes]
    single = [m for m in members if isinstance(m, AsyncResult)]
    if len(single) != len(members):
        raise ValueError("a group's member ends in one result (forkq.canvas.build makes it so)")
    return single
