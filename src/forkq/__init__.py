"""forkq: a distributed task queue whose worker is a prefork pool done right.

`Forkq`, `AsyncResult` and `Task` are loaded on first use: `import forkq.testing`, the pytest
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
    WorkerLost,
)
from forkq.states import FAILURE, PENDING, RETRY, STARTED, SUCCESS

if TYPE_CHECKING:
    from forkq.app import Forkq
    from forkq.result import AsyncResult
    from forkq.task import Task

__version__ = "0.1.0"
__all__ = [
    "FAILURE",
    "PENDING",
    "RETRY",
    "STARTED",
    "SUCCESS",
    "ArgumentError",
    "AsyncResult",
    "ConfigurationError",
    "Forkq",
    "ForkqError",
    "MaxRetriesExceeded",
    "ResultTimeout",
    "Retry",
    "SoftTimeLimitExceeded",
    "Task",
    "TaskFailed",
    "WorkerLost",
]


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
    raise AttributeError(f"module 'forkq' has no attribute {name!r}")
