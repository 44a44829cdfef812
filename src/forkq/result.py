"""Result records (as stored) and `AsyncResult` (what a caller holds)."""

from __future__ import annotations

import logging
import time
import traceback as tb
from typing import TYPE_CHECKING, Any

import msgspec

from forkq.brokers.sightings import who_consumes
from forkq.exceptions import BackendUnavailable, ResultTimeout, TaskFailed
from forkq.outage import Outage
from forkq.states import FAILURE, PENDING, READY_STATES, SUCCESS

log = logging.getLogger("forkq.client")

if TYPE_CHECKING:
    from forkq.app import Forkq


class ResultRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What a backend stores for a task. Failures are data, never pickled exceptions."""

    state: str
    result: Any = None
    exc_type: str | None = None
    exc_message: str | None = None
    traceback: str | None = None
    retries: int = 0
    date_done: float | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ResultRecord)


def encode_record(record: ResultRecord) -> bytes:
    return _encoder.encode(record)


def decode_record(payload: bytes) -> ResultRecord:
    return _decoder.decode(payload)


def success_record(value: Any, retries: int = 0) -> ResultRecord:
    return ResultRecord(state=SUCCESS, result=value, retries=retries, date_done=time.time())


def failure_record(
    exc_type: str, message: str, traceback: str = "", retries: int = 0
) -> ResultRecord:
    return ResultRecord(
        state=FAILURE,
        exc_type=exc_type,
        exc_message=message,
        traceback=traceback,
        retries=retries,
        date_done=time.time(),
    )


def exception_record(exc: BaseException, retries: int = 0) -> ResultRecord:
    text = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
    return failure_record(type(exc).__qualname__, str(exc), text, retries)


def encode_storable(record: ResultRecord) -> tuple[ResultRecord, bytes]:
    """The record as it will be stored, and its bytes: a return value JSON cannot hold makes
    it a FAILURE instead."""
    try:
        return record, _encoder.encode(record)
    except (TypeError, msgspec.EncodeError, RecursionError) as exc:
        reason = f"the task returned a value JSON cannot hold: {exc}"
        failure = failure_record("ResultNotSerializable", reason, retries=record.retries)
        return failure, _encoder.encode(failure)


class AsyncResult:
    """A handle on a task's outcome, by id. Cheap to create; every property reads the backend."""

    def __init__(self, task_id: str, app: Forkq, queue: str | None = None) -> None:
        self.id = task_id
        self.app = app
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

    def ready(self) -> bool:
        return self.state in READY_STATES

    def successful(self) -> bool:
        return self.state == SUCCESS

    @property
    def result(self) -> Any:
        """The return value, the `TaskFailed` error of a failure, or None while not ready."""
        record = self._record()
        if record is None:
            return None
        return self._failure(record) if record.state == FAILURE else record.result

    @property
    def traceback(self) -> str | None:
        record = self._record()
        return None if record is None else record.traceback

    def get(self, timeout: float | None = None, propagate: bool = True) -> Any:
        """Wait for the task to finish and return its value.

        A failed task raises `TaskFailed` (or returns it with propagate=False); waiting longer
        than `timeout` seconds raises `ResultTimeout`, a `TimeoutError` naming the task id. An
        unreachable backend is waited out until then; any other failure of the backend (one
        that waiting will not mend) is raised at once as `BackendError`.
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
                    raise
                time.sleep(pause)
                continue
            outage.succeeded()
            if stored is not None and stored.state in READY_STATES:
                break
            if time.monotonic() >= deadline:
                raise ResultTimeout(self.id, limit, self._who_consumes())
        record = decode_record(stored.payload)
        if record.state == SUCCESS:
            return record.result
        failure = self._failure(record)
        if propagate:
            raise failure
        return failure

    def _who_consumes(self) -> str:
        """Only on a timeout (a round trip). A handle made from a bare id does not know the
        queue, and a guess could mislead: then nothing."""
        if self.queue is None:
            return ""
        return who_consumes(lambda: self.app.broker, self.queue)

    def forget(self) -> None:
        self.app.backend.forget(self.id)

    def _failure(self, record: ResultRecord) -> TaskFailed:
        return TaskFailed(
            self.id, record.exc_type or "Error", record.exc_message or "", record.traceback or ""
        )
