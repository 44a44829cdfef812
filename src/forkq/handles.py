"""The app's handles on calls: `app.signature` (a call to send later, or as part of a
workflow), `app.AsyncResult` (one sent, by id) and `app.gather` (many sent, read together),
each forwarding to forkq/canvas/ or forkq/result.py."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from forkq.canvas.results import Gatherable, gather
from forkq.canvas.signature import Signature
from forkq.result import AsyncResult

if TYPE_CHECKING:
    from forkq.app import Forkq


class Handles:
    """Mixed into `Forkq`: it holds nothing of its own."""

    @property
    def _app(self) -> Forkq:
        """The app this is mixed into (`Forkq` returns itself)."""
        raise NotImplementedError

    def AsyncResult(self, task_id: str) -> AsyncResult[Any]:
        return AsyncResult(task_id, self._app)

    def signature(
        self,
        name: str,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Signature:
        """A call of task `name`, to send later or make part of a workflow (forkq.canvas);
        the task need not be registered in this process."""
        return Signature(name, args, kwargs, options, app=self._app)

    def gather(
        self,
        results: Iterable[Gatherable],
        timeout: float | None = None,
        propagate: bool = True,
    ) -> list[Any]:
        """The values of `results` (AsyncResults, or GroupResults: each a list), in order,
        once all are ready: read in one round trip per batch that finished, waiting without
        polling, `timeout` seconds at most in all. A failure raises its `TaskFailed` (with
        `propagate=False`, it takes its value's place)."""
        return gather(self._app, results, timeout, propagate)
