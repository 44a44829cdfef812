"""forkq: a distributed task queue whose worker is a prefork pool done right."""

from forkq.app import Forkq
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
from forkq.result import AsyncResult
from forkq.states import FAILURE, PENDING, RETRY, STARTED, SUCCESS
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
