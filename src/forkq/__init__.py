"""forkq: a distributed task queue whose worker is a prefork pool done right.

`Forkq`, `AsyncResult`, `Task` and the workflows' names (`chain`, `group`, `chord`,
`signature`, `GroupResult`) are loaded on first use: `import forkq.testing`, the pytest
plugin that every pytest run of a project with forkq installed loads, then costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from forkq.exceptions import (
    ArgumentError,
    ConfigurationError,
    ForkqError,
    MaxRetriesExceeded,
    ResultTimeout,
    Retry,
    SoftTimeLimitExceeded,
    TaskFailed,
    TaskRevoked,
    WorkerLost,
    WorkflowTooDeep,
)
from forkq.states import FAILURE, PENDING, RETRY, REVOKED, STARTED, SUCCESS

if TYPE_CHECKING:
    from forkq.app import Forkq
    from forkq.canvas.groups import chord, group
    from forkq.canvas.results import GroupResult
    from forkq.canvas.signature import Signature, chain
    from forkq.canvas.signature import Signature as signature
    from forkq.result import AsyncResult
    from forkq.task import Task

__version__ = "0.1.0"
__all__ = [
    "FAILURE",
    "PENDING",
    "RETRY",
    "REVOKED",
    "STARTED",
    "SUCCESS",
    "ArgumentError",
    "AsyncResult",
    "ConfigurationError",
    "Forkq",
    "ForkqError",
    "GroupResult",
    "MaxRetriesExceeded",
    "ResultTimeout",
    "Retry",
    "Signature",
    "SoftTimeLimitExceeded",
    "Task",
    "TaskFailed",
    "TaskRevoked",
    "WorkerLost",
    "WorkflowTooDeep",
    "chain",
    "chord",
    "group",
    "signature",
]

_CANVAS = ("Signature", "signature", "chain", "chord", "group")


def __getattr__(name: str) -> object:
    if name == "Forkq":
        from forkq.app import Forkq

        return Forkq
    if name == "AsyncResult":
        from forkq.result import AsyncResult

        return AsyncResult
    if name == "Task":
        from forkq.task import Task

        return Task
    if name in _CANVAS:
        from forkq.canvas.groups import chord, group
        from forkq.canvas.signature import Signature, chain

        kinds = {"signature": Signature, "Signature": Signature, "chain": chain, "group": group}
        return kinds.get(name, chord)
    if name == "GroupResult":
        from forkq.canvas.results import GroupResult

        return GroupResult
    raise AttributeError(f"module 'forkq' has no attribute {name!r}")
