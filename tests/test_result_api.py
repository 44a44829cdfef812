"""AsyncResult as Celery users know it, and failures raised as their original type."""

from __future__ import annotations

import asyncio
import pickle
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone

import msgspec
import pytest

from forkq import Forkq, ResultTimeout, TaskFailed
from forkq.exceptions import BackendUnavailable, BackendUnreachable, WorkerLost
from forkq.result import ResultRecord, encode_record, failure_record
from forkq.states import FAILURE, PENDING, RETRY, SUCCESS
from tests.conftest import server_port
from tests.worker.test_executor import Harness


class AppError(Exception):
    def __init__(self, code: int, text: str) -> None:  # not TaskFailed's arguments
        super().__init__(code, text)
        self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.args[1]}"


class OtherError(Exception):
    pass


OwnConnectionError = type("ConnectionError", (OSError,), {"__module__": __name__})


class OwnNewError(Exception):
    def __new__(cls, code: int) -> OwnNewError:  # not TaskFailed's arguments either
        if not isinstance(code, int):
            raise TypeError(f"code must be an int, not {code!r}")
        return super().__new__(cls, code)


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.scoreboard.close()


def store(app: Forkq, task_id: str, record: ResultRecord) -> None:
    app.backend.store(task_id, record.state, encode_record(record), 60)


class TestMembers:
    def test_a_success(self, h: Harness) -> None:
        add = h.app.task(name="proj.add")(lambda x, y: x + y)
        result = add.delay(2, 3)
        assert (result.name, result.status, result.info, result.date_done) == (
            "proj.add",
            PENDING,
            None,
            None,
        )
        before = datetime.now(timezone.utc)
        h.run_next()
        assert result.wait(timeout=1) == 5
        assert (result.status, result.info, result.failed()) == (SUCCESS, 5, False)
        assert result.date_done is not None and result.date_done.tzinfo is timezone.utc
        assert before.timestamp() - 1 <= result.date_done.timestamp() <= time.time()
        assert h.app.AsyncResult(result.id).name == "proj.add"  # read from the stored record

    def test_a_failure(self, h: Harness) -> None:
        def explode() -> None:
            raise LookupError("gone")

        result = h.app.task(name="proj.explode")(explode).delay()
        h.run_next()
        assert result.failed() and result.status == FAILURE
        assert isinstance(result.info, TaskFailed) and isinstance(result.info, LookupError)
        assert h.app.AsyncResult(result.id).name == "proj.explode"
        assert result.date_done is not None

    def test_a_retry_shows_its_cause_and_no_date_done(self, h: Harness) -> None:
        record = ResultRecord(
            state=RETRY, exc_type="OSError", exc_module="builtins", exc_message="reset",
            date_done=time.time() + 60,
        )  # fmt: skip
        store(h.app, "r-1", record)
        result = h.app.AsyncResult("r-1")
        assert isinstance(result.info, OSError) and result.date_done is None

    def test_a_retry_for_an_error_named_as_a_builtin_is_not_the_builtin(self, h: Harness) -> None:
        def fetch() -> None:
            raise OwnConnectionError("refused")  # as requests.ConnectionError would

        options = {"autoretry_for": (OwnConnectionError,), "retry_kwargs": {"countdown": 60}}
        result = h.app.task(name="proj.fetch", **options)(fetch).delay()
        h.run_next()
        assert result.state == RETRY and type(result.info) is TaskFailed
        assert (result.info.exc_module, result.info.exc_type) == (__name__, "ConnectionError")

    def test_an_unreachable_backend_is_not_a_plain_timeout(self) -> None:
        app = Forkq("t", broker=f"memory://{uuid.uuid4().hex}")
        app.configure(result_backend=f"redis://127.0.0.1:{server_port()}/0")  # nothing there
        with pytest.raises(BackendUnreachable, match="result backend was unreachable") as error:
            app.AsyncResult("t-1").get(timeout=0.3)
        assert isinstance(error.value, ResultTimeout) and isinstance(error.value, TimeoutError)
        assert isinstance(error.value, BackendUnavailable)
        assert (error.value.task_id, error.value.hint) == ("t-1", "")


class TestTypedFailures:
    def fail(self, h: Harness, exc: BaseException) -> TaskFailed:
        def raiser() -> None:
            raise exc

        result = h.app.task(name=f"f{uuid.uuid4().hex}")(raiser).delay()
        h.run_next()
        with pytest.raises(TaskFailed) as failed:
            result.get(timeout=1)
        return failed.value

    def test_a_builtin_error_is_also_that_type(self, h: Harness) -> None:
        error = self.fail(h, KeyError("missing"))
        assert isinstance(error, KeyError) and isinstance(error, TaskFailed)
        assert (error.exc_type, error.exc_module, error.exc_message) == (
            "KeyError",
            "builtins",
            "'missing'",
        )
        assert str(error).endswith("failed: KeyError: 'missing'")
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and again.exc_message == error.exc_message
        assert type(self.fail(h, KeyError("other"))) is type(error)  # one class per type

    def test_a_registered_error_is_that_type_and_others_are_not(self, h: Harness) -> None:
        assert h.app.register_exception(AppError) is AppError
        error = self.fail(h, AppError(7, "no"))
        assert isinstance(error, AppError) and isinstance(error, TaskFailed)
        assert (error.exc_module, error.exc_type) == (__name__, "AppError")
        assert error.exc_message == "7: no" and "AppError: 7: no" in str(error)
        plain = self.fail(h, OtherError("x"))
        assert type(plain) is TaskFailed

    def test_a_type_that_cannot_be_made_from_the_record_is_a_plain_failure(
        self, h: Harness
    ) -> None:
        h.app.register_exception(OwnNewError)
        error = self.fail(h, OwnNewError(7))
        assert type(error) is TaskFailed and error.exc_type == "OwnNewError"
        assert type(pickle.loads(pickle.dumps(error))) is TaskFailed

    @pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.TaskGroup is new in 3.11")
    def test_an_exception_group_is_a_plain_failure(self, h: Harness) -> None:
        async def broken() -> None:
            raise ValueError("inner")

        async def grouped() -> None:
            async with asyncio.TaskGroup() as group:
                group.create_task(broken())

        result = h.app.task(name="grouped")(grouped).delay()
        h.run_next()
        with pytest.raises(TaskFailed) as failed:
            result.get(timeout=1)
        assert type(failed.value) is TaskFailed and failed.value.exc_type == "ExceptionGroup"
        assert "ValueError: inner" in failed.value.remote_traceback
        assert type(result.result) is TaskFailed and type(result.info) is TaskFailed

    def test_system_exit_is_never_the_callers(self, h: Harness) -> None:
        assert type(self.fail(h, SystemExit(3))) is TaskFailed

    def test_records_without_a_module_stay_readable(self, h: Harness) -> None:
        store(h.app, "old-1", failure_record("ValueError", "bad"))
        store(h.app, "old-2", failure_record("AppError", "7: no"))
        store(h.app, "old-3", failure_record("WorkerLost", "died"))
        h.app.register_exception(AppError)  # an old record does not say which AppError
        assert isinstance(h.app.AsyncResult("old-1").result, ValueError)
        assert type(h.app.AsyncResult("old-2").result) is TaskFailed
        assert isinstance(h.app.AsyncResult("old-3").result, WorkerLost)
        old_bytes = msgspec.json.encode({"state": "FAILURE", "exc_type": "ValueError"})
        h.app.backend.store("old-4", FAILURE, old_bytes, 60)  # as an older forkq wrote it
        with pytest.raises(ValueError):
            h.app.AsyncResult("old-4").get(timeout=1)
