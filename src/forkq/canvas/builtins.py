"""The tasks every app registers, which workflows send by name (so every worker has them).
The app makes them (`Forkq.builtin_tasks`, from `BUILTINS`) and keeps them apart from its own
tasks: a worker's banner, its no-task warning and its unknown-task reasons speak of the app's
tasks only.

    forkq.collect(results)        a chord's body that returns its header's results: what a
                                  group becomes where its result must be one value
    forkq.starmap(task, calls)    `task.starmap(...)` and each chunk of `task.chunks(...)`:
                                  the task's function called here once per argument list
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from forkq.exceptions import ConfigurationError
from forkq.flow import COLLECT_TASK, STARMAP_TASK


class _App(Protocol):
    @property
    def tasks(self) -> Mapping[str, Callable[..., Any]]: ...


class _Bound(Protocol):
    """The running task (`bind=True`), as far as starmap needs it. A class of this module,
    since the worker reads the functions' annotations to convert their arguments."""

    @property
    def app(self) -> _App: ...


def collect(results: Any) -> Any:
    """The results of a chord's header, in order, as its body was given them (the list: `Any`
    so that the worker has nothing to convert)."""
    return results


def starmap(self: _Bound, task: str, calls: Any) -> list[Any]:
    """The values of `task` (its function, called in this process) for each argument list."""
    found = self.app.tasks.get(task)
    if found is None:
        raise ConfigurationError(f"forkq.starmap: unknown task {task!r}")
    return [found(*args) for args in calls]


#: (name, function, options) of each built-in task.
BUILTINS: tuple[tuple[str, Callable[..., Any], dict[str, Any]], ...] = (
    (COLLECT_TASK, collect, {"typing": False}),
    (STARMAP_TASK, starmap, {"bind": True, "typing": False}),
)
