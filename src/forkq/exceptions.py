"""Errors forkq raises to its users, and the control-flow exception `Retry`."""

from __future__ import annotations


class ForkqError(Exception):
    """Base class of every error forkq raises on purpose."""


class ConfigurationError(ForkqError):
    """A setting, URL or argument cannot be used as given."""


class BrokerError(ForkqError):
    """The broker failed; the driver's own exception is chained as __cause__. Raised as it
    is for a failure that is not a connection problem (a script error, a wrong type, a full
    disk): retrying will not help until someone acts."""


class BackendError(ForkqError):
    """The result backend failed; the driver's own exception is chained as __cause__. Raised
    as it is for a failure that is not a connection problem, like `BrokerError`."""


class Unavailable(ForkqError):
    """The broker or result backend could not be reached: a connection lost or refused, a
    timeout, a server still loading or a database locked by another process. It is expected
    to pass: the worker rides it out with back-off and calls it an outage."""


class BrokerUnavailable(BrokerError, Unavailable):
    """The broker could not be reached (see `Unavailable`)."""


class BackendUnavailable(BackendError, Unavailable):
    """The result backend could not be reached (see `Unavailable`)."""


MAX_REASON = 1000  # characters of a rejection's reason kept (logs, dead letters, results)


class MessageRejected(ForkqError):
    """A message cannot be executed: it is dead-lettered with `reason`.

    `task_id` is set when the id could be read, so that a FAILURE result can be stored for it.
    `trusted` is False when the message failed authentication: such input may not write results.
    `exc_type` names the failure in that result (`WorkerLost` for the redelivery limit).
    """

    def __init__(
        self,
        reason: str,
        task_id: str | None = None,
        *,
        trusted: bool = True,
        exc_type: str = "MessageRejected",
    ) -> None:
        if len(reason) > MAX_REASON:  # reasons quote the message: a hostile one can be huge
            reason = f"{reason[: MAX_REASON - 40]}... ({len(reason):,} characters in all)"
        super().__init__(reason)
        self.reason = reason
        self.task_id = task_id
        self.trusted = trusted
        self.exc_type = exc_type


class TaskFailed(ForkqError):
    """A task raised; carries the remote exception as data (never unpickled)."""

    def __init__(self, task_id: str, exc_type: str, exc_message: str, traceback: str) -> None:
        super().__init__(f"task {task_id} failed: {exc_type}: {exc_message}")
        self.task_id = task_id
        self.exc_type = exc_type
        self.exc_message = exc_message
        self.remote_traceback = traceback

    def __reduce__(self) -> tuple[type[TaskFailed], tuple[str, str, str, str]]:
        return (
            type(self),
            (self.task_id, self.exc_type, self.exc_message, self.remote_traceback),
        )


class ResultTimeout(ForkqError, TimeoutError):
    """`AsyncResult.get()` gave up waiting."""

    def __init__(self, task_id: str, timeout: float, hint: str = "") -> None:
        super().__init__(
            f"task {task_id} not ready after {timeout:g}s" + (f"; {hint}" if hint else "")
        )
        self.task_id = task_id
        self.timeout = timeout
        self.hint = hint  # who consumes the task's queue, when that is known


class Retry(ForkqError):
    """Raised by `Task.retry()`: the worker reschedules the task instead of failing it."""

    def __init__(self, countdown: float, exc: BaseException | None = None) -> None:
        super().__init__(f"retry in {countdown:.3f}s" + (f" after {exc!r}" if exc else ""))
        self.countdown = countdown
        self.exc = exc


class MaxRetriesExceeded(ForkqError):
    """`Task.retry()` was called with no retries left and no exception to re-raise."""


class WorkerLost(ForkqError):
    """The process running the task died, more often than the redelivery limit allows."""


class SoftTimeLimitExceeded(ForkqError):
    """Raised inside a task that ran past its soft time limit."""


class TimeLimitExceeded(ForkqError):
    """A task ran past its hard time limit: its process was killed (stored as the FAILURE)."""
