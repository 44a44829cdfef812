"""Errors forkq raises to its users, and the control-flow exception `Retry`."""

from __future__ import annotations

import enum
from typing import Any, ClassVar, cast


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


class NotReplicated(BrokerError):
    """Published, but fewer Redis replicas than the URL's `wait_replicas` acknowledged it within
    its `wait_timeout`: the messages are queued on the primary and run unless it fails before
    a replica has them. Publishing them again may run them twice."""


class ServerFull(ForkqError):
    """The server refused a write because it is full: Redis over `maxmemory` with the
    `noeviction` policy, or RabbitMQ blocking publishers past the bounded wait (a memory or
    disk alarm). Nothing of the refused call was written. Not an outage: it lasts until
    someone frees room (consumes, purges, raises the limit)."""


class BrokerFull(BrokerError, ServerFull):
    """The broker refused a publish or another write: it is full (see `ServerFull`)."""


class BackendFull(BackendError, ServerFull):
    """The result backend refused a write: it is full (see `ServerFull`)."""


class TaskFailed(ForkqError):
    """A task raised; carries the remote exception as data (never unpickled).

    When the remote type is a built-in exception or one the app registered as safe, the
    error raised is of a subclass of both this and that type (see `forkq.failures`), made
    without running that type's `__init__`: `except KeyError:` matches, but attributes the
    original `__init__` would have set are absent; `exc_message` has its text.
    """

    original: ClassVar[type[Exception] | None] = None  # set on the typed subclasses

    def __init__(
        self,
        task_id: str,
        exc_type: str,
        exc_message: str,
        traceback: str,
        exc_module: str | None = None,
    ) -> None:
        # Not super(): the next class in a typed subclass's MRO is the original type, whose
        # __init__ may take other arguments.
        Exception.__init__(self, f"task {task_id} failed: {exc_type}: {exc_message}")
        self.task_id = task_id
        self.exc_type = exc_type
        self.exc_module = exc_module
        self.exc_message = exc_message
        self.remote_traceback = traceback

    def __str__(self) -> str:  # first in the MRO: the original type's __str__ may need state
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        fields = (self.task_id, self.exc_type, self.exc_message, self.remote_traceback)
        return (_rebuild_failure, (self.original, *fields, self.exc_module))


class TaskRevoked(TaskFailed):
    """The task was revoked (`AsyncResult.revoke`, `forkq control revoke`): a worker discarded it
    without running it, or terminated the process running it. Its state is REVOKED; a
    `TaskFailed`, so that code that handles a task's failure handles this too. `exc_message`
    says which of the two ("not run", "terminated while running")."""

    def __init__(
        self,
        task_id: str,
        exc_type: str = "TaskRevoked",
        exc_message: str = "revoked",
        traceback: str = "",
        exc_module: str | None = None,
    ) -> None:
        super().__init__(task_id, exc_type, exc_message, traceback, exc_module)
        self.args = (f"task {task_id} was revoked: {exc_message}",)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        fields = (self.task_id, self.exc_type, self.exc_message, self.remote_traceback)
        return (TaskRevoked, (*fields, self.exc_module))


def _rebuild_failure(original: type[Exception] | None, *fields: Any) -> TaskFailed:
    return failure_of(original, *fields)


def failure_of(original: type[Exception] | None, *fields: Any) -> TaskFailed:
    """The `TaskFailed` made of `fields` (its arguments), also an instance of `original` when
    the two combine; a plain `TaskFailed` when they do not: no `original`, a class that cannot
    be made (an incompatible C layout), or one that cannot be instantiated from these fields
    (a `__new__` of the original's own, like `ExceptionGroup`'s, which wants the group's
    exceptions: there are none to give, since the record holds only text)."""
    cls = None if original is None else failure_class(original)
    if cls is not None:
        try:
            return cls(*fields)
        except Exception:  # whatever the original's __new__ raised: the failure is still one
            pass
    return TaskFailed(*fields)


_failure_classes: dict[type[Exception], type[TaskFailed] | None] = {}


def failure_class(original: type[Exception]) -> type[TaskFailed] | None:
    """The subclass of both `TaskFailed` and `original`, made once per type; None for a type
    that cannot be combined with it (an incompatible C layout). Instances are made by
    `failure_of` only, which falls back to a plain `TaskFailed` when this class cannot be."""
    if issubclass(original, TaskFailed):
        return original
    if original not in _failure_classes:
        try:
            made = type(f"TaskFailed[{original.__qualname__}]", (TaskFailed, original), {})
        except TypeError:
            _failure_classes[original] = None
        else:
            cls = cast(type[TaskFailed], made)
            cls.original = original
            _failure_classes[original] = cls
    return _failure_classes[original]


class ArgumentError(ForkqError, TypeError):
    """A call's arguments do not fit the task: they do not bind to its signature, JSON cannot
    hold one, or (in the worker) one does not convert to its parameter's annotation."""


class ResultTimeout(ForkqError, TimeoutError):
    """`AsyncResult.get()` gave up waiting."""

    def __init__(self, task_id: str, timeout: float, hint: str = "") -> None:
        super().__init__(
            f"task {task_id} not ready after {timeout:g}s" + (f"; {hint}" if hint else "")
        )
        self.task_id = task_id
        self.timeout = timeout
        self.hint = hint  # who consumes the task's queue, when that is known


class BackendUnreachable(ResultTimeout, BackendUnavailable):
    """`AsyncResult.get()` gave up because the result backend stayed unreachable until its
    timeout: a `ResultTimeout` (the wait ended without a result) and a `BackendUnavailable`
    (the reason), with a message that says so."""

    def __init__(self, task_id: str, timeout: float, unreachable_for: float, cause: str) -> None:
        Exception.__init__(
            self,
            f"task {task_id}: the result backend was unreachable for the last "
            f"{unreachable_for:.1f}s of the {timeout:g}s wait ({cause})",
        )
        self.task_id = task_id
        self.timeout = timeout
        self.hint = ""  # a ResultTimeout's: the reason is in the message
        self.unreachable_for = unreachable_for


class ForkqWarning(UserWarning):
    """Something forkq accepted but will not act on as asked (a Celery setting it ignores)."""


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


class WorkflowTooDeep(ConfigurationError):
    """A workflow nests more levels of chains, groups and chords than forkq.canvas allows."""

    def __init__(self, depth: int, limit: int) -> None:
        super().__init__(
            f"workflow nested {depth} levels deep (chains, groups, chords and their "
            f"callbacks), more than the limit of {limit}"
        )
        self.depth = depth
        self.limit = limit


class WorkflowError(ForkqError):
    """A workflow's step could not go on: its next message could not be sent (too large, say),
    or a chord's body found a member's result missing (expired before the body ran)."""


MAX_REASON = 1000  # characters of a rejection's reason kept (logs, dead letters, results)


class Rejection(enum.Enum):
    """Why a message is rejected: which FAILURE its task gets, and whether one is stored."""

    #: The message cannot run as it is: malformed, unknown task, expired.
    INPUT = "MessageRejected"  # the class below
    #: Its arguments do not fit the task's signature or annotations.
    ARGUMENTS = ArgumentError.__name__
    #: The processes handling it died more often than its redelivery limit allows.
    WORKER_LOST = WorkerLost.__name__
    #: Its process was killed for its hard time limit: the master stored that FAILURE.
    KILLED_FOR_TIME = TimeLimitExceeded.__name__
    #: A chord's body whose header's results cannot be gathered.
    WORKFLOW = WorkflowError.__name__

    @property
    def exc_type(self) -> str:
        """The error type its task's FAILURE record names."""
        return self.value


class MessageRejected(ForkqError):
    """A message cannot be executed: it is dead-lettered with `reason`.

    `task_id` is set when the id could be read. `trusted` is False when the message failed
    authentication: such input may not write results. `kind` says why it is rejected, and so
    the error type its FAILURE names (`failed_task_id` says whether one is stored).
    """

    def __init__(
        self,
        reason: str,
        task_id: str | None = None,
        *,
        trusted: bool = True,
        kind: Rejection = Rejection.INPUT,
    ) -> None:
        if len(reason) > MAX_REASON:  # reasons quote the message: a hostile one can be huge
            reason = f"{reason[: MAX_REASON - 40]}... ({len(reason):,} characters in all)"
        super().__init__(reason)
        self.reason = reason
        self.task_id = task_id
        self.trusted = trusted
        self.kind = kind

    @property
    def exc_type(self) -> str:
        return self.kind.exc_type

    @property
    def failed_task_id(self) -> str | None:
        """The task whose FAILURE (of `exc_type`, with the reason) the rejecter stores: none
        when its id is unknown or untrusted, or when the master stored it already."""
        if not self.trusted or self.kind is Rejection.KILLED_FOR_TIME:
            return None
        return self.task_id


class NoWorkerHere(ForkqError):
    """No live master's socket where this host's workers put theirs; says where it looked."""
