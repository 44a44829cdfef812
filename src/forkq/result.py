"""Result records (as stored) and `AsyncResult` (what a caller holds)."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, overload

import msgspec

from forkq.engines.sightings import who_consumes
from forkq.exceptions import (
    BackendUnavailable,
    BackendUnreachable,
    ResultTimeout,
    TaskFailed,
    TaskRevoked,
)
from forkq.failures import task_failure
from forkq.outage import Outage
from forkq.states import FAILURE, PENDING, READY_STATES, RETRY, REVOKED, SUCCESS

log = logging.getLogger("forkq.client")

if TYPE_CHECKING:
    from typing_extensions import TypeVar as DefaultedTypeVar

    from forkq.app import Forkq

    R = DefaultedTypeVar("R", default=Any)  # a bare `AsyncResult` is `AsyncResult[Any]`
else:
    R = TypeVar("R")


class ResultRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What a backend stores for a task. Failures are data, never pickled exceptions."""

    state: str
    result: Any = None
    exc_type: str | None = None  # the qualified name; a bare name for forkq's own failures
    exc_module: str | None = None  # the type's module (None in records of older versions)
    exc_message: str | None = None
    traceback: str | None = None
    retries: int = 0
    date_done: float | None = None
    name: str | None = None  # the task's name (None in records of older versions)
    # The sending of the task whose run wrote it (`forkq.worker.lease.run_fence`): a redelivery
    # of that sending finds its run ended (forkq/worker/redelivered.py). Left out of the bytes
    # when unset: records written by no run (a verdict, a rejection) and by older versions.
    sending: str | msgspec.UnsetType = msgspec.UNSET


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ResultRecord)


def encode_record(record: ResultRecord) -> bytes:
    return _encoder.encode(record)


def decode_record(payload: bytes) -> ResultRecord:
    return _decoder.decode(payload)


def success_record(value: Any, retries: int = 0, name: str | None = None) -> ResultRecord:
    return ResultRecord(
        state=SUCCESS, result=value, retries=retries, date_done=time.time(), name=name
    )


def failure_record(
    exc_type: str,
    message: str,
    traceback: str = "",
    retries: int = 0,
    *,
    exc_module: str | None = None,
    name: str | None = None,
) -> ResultRecord:
    return ResultRecord(
        state=FAILURE,
        exc_type=exc_type,
        exc_module=exc_module,
        exc_message=message,
        traceback=traceback,
        retries=retries,
        date_done=time.time(),
        name=name,
    )


def revoked_record(how: str, name: str | None = None) -> ResultRecord:
    """The REVOKED record of a revoked task; `how` says what became of it ("not run",
    "terminated while running")."""
    return ResultRecord(
        state=REVOKED,
        exc_type=TaskRevoked.__name__,
        exc_message=how,
        date_done=time.time(),
        name=name,
    )


def encode_storable(record: ResultRecord) -> tuple[ResultRecord, bytes]:
    """The record as it will be stored, and its bytes: a return value JSON cannot hold makes
    it a FAILURE instead."""
    try:
        return record, _encoder.encode(record)
    except (TypeError, msgspec.EncodeError, RecursionError) as exc:
        reason = f"the task returned a value JSON cannot hold: {exc}"
        failure = msgspec.structs.replace(
            failure_record("ResultNotSerializable", reason, retries=record.retries),
            name=record.name,
            sending=record.sending,
        )
        return failure, _encoder.encode(failure)


class ResultHandle(Protocol):
    """What a workflow's step gives back: an AsyncResult, or a GroupResult (forkq.canvas)."""

    @property
    def id(self) -> str: ...

    def ready(self) -> bool: ...


class AsyncResult(Generic[R]):
    """A handle on a task's outcome, by id. Cheap to create; every property reads the backend.

    Generic in the task's return type: `add.delay(1, 2)` is an `AsyncResult[int]` when `add`
    returns an int, so `get()` is typed. A workflow's handle has a `parent`: the handle of
    the step before it (see forkq.canvas)."""

    parent: ResultHandle | None = None  # set on the handles of workflows' steps

    def __init__(
        self, task_id: str, app: Forkq, *, name: str | None = None, queue: str | None = None
    ) -> None:
        self.id = task_id
        self.app = app
        self._name = name
        self.queue = queue  # where it was sent, when this handle made it (for a timeout's hint)

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id}>"

    def _record(self) -> ResultRecord | None:
        stored = self.app.backend.get(self.id)
        return None if stored is None else decode_record(stored.payload)

    @property
    def state(self) -> str:
        record = self._record()
        return PENDING if record is None else record.state

    @property
    def status(self) -> str:
        """The same as `state` (Celery's other name for it)."""
        return self.state

    @property
    def name(self) -> str | None:
        """The task's name: known at once for a result from `delay()`/`send_task()`, else read
        from the stored result (None while there is none)."""
        if self._name is None:
            record = self._record()
            self._name = None if record is None else record.name
        return self._name

    def ready(self) -> bool:
        return self.state in READY_STATES

    def successful(self) -> bool:
        return self.state == SUCCESS

    def failed(self) -> bool:
        return self.state == FAILURE

    @property
    def result(self) -> Any:
        """The return value, the `TaskFailed` error of a failure (`TaskRevoked` of a revoked
        task), or None while not ready."""
        record = self._record()
        if record is None:
            return None
        return self.failure(record) if record.state in (FAILURE, REVOKED) else record.result

    @property
    def info(self) -> Any:
        """As Celery's: the return value, the error of a failure or the one a retry was for,
        None otherwise."""
        record = self._record()
        if record is None:
            return None
        if record.state in (FAILURE, RETRY, REVOKED) and record.exc_type is not None:
            return self.failure(record)
        return record.result

    @property
    def date_done(self) -> datetime | None:
        """When the task finished (UTC); None until it has."""
        record = self._record()
        if record is None or record.state not in READY_STATES or record.date_done is None:
            return None
        return datetime.fromtimestamp(record.date_done, timezone.utc)

    @property
    def traceback(self) -> str | None:
        record = self._record()
        return None if record is None else record.traceback

    @overload
    def get(self, timeout: float | None = None, propagate: Literal[True] = True) -> R: ...
    @overload
    def get(self, timeout: float | None = None, *, propagate: bool) -> R | TaskFailed: ...

    def get(self, timeout: float | None = None, propagate: bool = True) -> R | TaskFailed:
        """Wait for the task to finish and return its value.

        A failed task raises `TaskFailed` (or returns it with propagate=False), a revoked one
        `TaskRevoked` (a `TaskFailed` too); waiting longer
        than `timeout` seconds raises `ResultTimeout`, a `TimeoutError` naming the task id. An
        unreachable backend is waited out until then, and if it is still unreachable at the
        deadline the `ResultTimeout` is a `BackendUnreachable` that says so; any other failure
        of the backend (one that waiting will not mend) is raised at once as `BackendError`.
        """
        limit = float("inf") if timeout is None else timeout
        deadline = time.monotonic() + limit
        outage = Outage("result backend", log)
        while True:
            remaining = deadline - time.monotonic()
            try:
                # In slices, so that an unbounded get() still re-arms against lost wake-ups.
                stored = self.app.backend.wait(self.id, min(60.0, max(0.0, remaining)))
            except BackendUnavailable as exc:  # a restarting server: ride it out
                pause = outage.failed(exc)
                if time.monotonic() + pause >= deadline:
                    since = outage.since or time.monotonic()
                    down = time.monotonic() - since
                    raise BackendUnreachable(self.id, limit, down, str(exc)) from exc
                time.sleep(pause)
                continue
            outage.succeeded()
            if stored is not None and stored.state in READY_STATES:
                break
            if time.monotonic() >= deadline:
                raise ResultTimeout(self.id, limit, self.timeout_hint())
        record = decode_record(stored.payload)
        if record.state == SUCCESS:
            return record.result  # type: ignore[no-any-return]  # typed by the task
        failure = self.failure(record)
        if propagate:
            raise failure
        return failure

    @overload
    def wait(self, timeout: float | None = None, propagate: Literal[True] = True) -> R: ...
    @overload
    def wait(self, timeout: float | None = None, *, propagate: bool) -> R | TaskFailed: ...

    def wait(self, timeout: float | None = None, propagate: bool = True) -> R | TaskFailed:
        """The same as `get()` (Celery's other name for it)."""
        return self.get(timeout, propagate=propagate)

    def timeout_hint(self) -> str:
        """Only on a timeout: who consumes the task's queue (a round trip to the broker). A
        handle made from a bare id does not know the queue, and a guess could mislead: then
        nothing. In eager mode there is no broker to ask, nor a worker to wait for: the task
        ran when it was sent, so its result is not stored."""
        if self.app.settings.eager:
            task = self.app.tasks.get(self._name or "")
            if task is not None and task.ignores_result:
                return (
                    f"eager mode ran it when it was sent, and {task.name} ignores its result "
                    "(ignore_result): there is none to wait for"
                )
            return (
                "eager mode runs a task when it is sent, in this process: no result is stored "
                "here for this id (a task that ignores its result stores none)"
            )
        if self.queue is None:
            return ""
        from forkq.engines.sqlite.file import shown_url  # on a timeout only: SQLite's modules

        where = shown_url(self.app.settings.broker_url)
        return who_consumes(lambda: self.app.broker, self.queue, where)

    def forget(self) -> None:
        self.app.backend.forget(self.id)

    def revoke(self, terminate: bool = False, signal: str = "SIGTERM") -> None:
        """Revoke the task: no worker runs it from now on, a worker started later included
        (kept in the result backend); with `terminate`, the process running it now is sent
        `signal` too (see `Forkq.revoke`)."""
        self.app.revoke([self.id], terminate=terminate, signal=signal)

    def failure(self, record: ResultRecord) -> TaskFailed:
        """The error a FAILURE record of this task reads as (`get()` raises it); a REVOKED
        record's is `TaskRevoked`."""
        if record.state == REVOKED:
            how = record.exc_message or "revoked"
            return TaskRevoked(self.id, record.exc_type or TaskRevoked.__name__, how)
        return task_failure(
            self.id,
            record.exc_module,
            record.exc_type or "Error",
            record.exc_message or "",
            record.traceback or "",
            self.app.safe_exceptions,
        )
