"""One delivery to one outcome, in process, on the real memory engines."""

from __future__ import annotations

import logging
import time

import pytest

from forkq import TaskFailed, exceptions
from forkq.calling import execute
from forkq.envelope import make_message
from forkq.exceptions import MessageRejected, Rejection
from forkq.failures import safe_type
from forkq.states import FAILURE, RETRY, STARTED, SUCCESS
from forkq.task import Task
from tests.bodies import nested_too_deeply
from tests.worker.harness import Harness, task


def test_success_is_stored_and_acked(h: Harness) -> None:
    add = task(h, lambda x, y: x + y, name="add")
    result = add.delay(2, 3)
    h.run_next()
    assert result.get(timeout=1) == 5
    assert h.app.broker.size(h.queue) == 0
    slot = h.scoreboard.read(0)
    assert (slot.done, slot.failed, slot.task_id) == (1, 0, "")


def test_exception_becomes_failure_data(h: Harness) -> None:
    def explode() -> None:
        raise KeyError("missing")

    result = task(h, explode).delay()
    h.run_next()
    with pytest.raises(TaskFailed) as failed:
        result.get(timeout=1)
    assert (failed.value.exc_type, failed.value.exc_message) == ("KeyError", "'missing'")
    assert "in explode" in failed.value.remote_traceback
    assert h.app.broker.size(h.queue) == 0
    assert h.scoreboard.read(0).failed == 1


def test_retry_republishes_then_fails_with_the_original_error(h: Harness) -> None:
    seen: list[int] = []

    def flaky(self: Task) -> None:
        seen.append(self.request.retries)
        raise self.retry(exc=OSError("down"), countdown=0)

    result = task(h, flaky, bind=True, max_retries=2).delay()
    h.run_next()
    assert h.record(result.id).state == RETRY
    h.run_next()
    h.run_next()
    assert seen == [0, 1, 2]
    record = h.record(result.id)
    assert (record.state, record.exc_type, record.retries) == (FAILURE, "OSError", 2)
    assert h.app.broker.size(h.queue) == 0


def test_retry_without_raise_is_a_retry_not_a_success(h: Harness) -> None:
    ran_on: list[int] = []

    def flaky(self: Task) -> str:
        try:
            raise OSError("down")
        except OSError as exc:
            self.retry(exc=exc, countdown=0)  # no `raise`, as Celery users write it
        ran_on.append(self.request.retries)  # never reached: retry() raised
        return "went on"

    result = task(h, flaky, bind=True, max_retries=1).delay()
    h.run_next()
    assert h.record(result.id).state == RETRY
    h.run_next()
    record = h.record(result.id)
    assert (record.state, record.exc_type, record.retries) == (FAILURE, "OSError", 1)
    assert ran_on == []


def test_autoretry_for_retries_then_fails_with_the_error(h: Harness) -> None:
    tries: list[int] = []

    def fetch(self: Task) -> None:
        tries.append(self.request.retries)
        raise ConnectionError("refused")

    options = {"autoretry_for": (OSError,), "retry_kwargs": {"max_retries": 2, "countdown": 0}}
    result = task(h, fetch, bind=True, **options).delay()
    for _ in range(3):
        h.run_next()
    record = h.record(result.id)
    assert (record.state, record.exc_type, record.retries) == (FAILURE, "ConnectionError", 2)
    assert tries == [0, 1, 2]
    assert h.app.broker.size(h.queue) == 0


def test_back_off_for_ever_stays_at_its_cap(h: Harness) -> None:
    def fetch() -> None:
        raise ConnectionError("refused")

    options = {"retry_backoff": True, "retry_jitter": False, "max_retries": None}
    forever = task(h, fetch, autoretry_for=(OSError,), **options)
    for retries in (1_023, 1_024, 10**6):
        message = make_message("fetch", [], {}, queue=h.queue, retries=retries)
        record = execute(forever, message)
        assert record.state == RETRY and record.date_done is not None
        assert 599 < record.date_done - time.time() <= 600


def test_an_error_working_out_a_retry_is_the_tasks_failure(h: Harness) -> None:
    def fetch(self: Task, how: str) -> None:
        if how == "asked":
            self.retry()
        raise ConnectionError("refused")

    options = {"retry_backoff": True, "retry_backoff_max": "600"}  # a str: min() cannot compare
    fetcher = task(h, fetch, bind=True, autoretry_for=(Exception,), **options)
    for how in ("asked", "automatic"):
        result = fetcher.delay(how)
        h.run_next()
        record = h.record(result.id)
        assert (record.state, record.exc_type, record.retries) == (FAILURE, "TypeError", 0)
        assert "'<' not supported" in record.exc_message
        assert h.app.broker.size(h.queue) == 0
    assert "ConnectionError: refused" in record.traceback  # what it was retrying for


def test_dont_autoretry_for_fails_at_once(h: Harness) -> None:
    def fetch() -> None:
        raise FileNotFoundError("gone")

    options = {"autoretry_for": (OSError,), "dont_autoretry_for": (FileNotFoundError,)}
    result = task(h, fetch, **options).delay()
    h.run_next()
    assert (h.record(result.id).state, h.app.broker.size(h.queue)) == (FAILURE, 0)


def test_a_failure_logs_and_stores_the_tasks_own_traceback(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    def parse(text: str) -> int:
        return int(text)

    def convert(text: str) -> int:
        return parse(text)

    result = task(h, convert).delay("x")
    with caplog.at_level(logging.ERROR, logger="forkq"):
        h.run_next()
    [logged] = [r for r in caplog.records if r.levelno == logging.ERROR]
    stored = h.record(result.id).traceback
    for text in (logged.getMessage(), stored):
        assert "in convert" in text and "in parse" in text and "ValueError: invalid" in text
        assert "forkq/calling.py" not in text and "forkq/task.py" not in text
        assert "forkq/worker" not in text
    assert stored.startswith("Traceback (most recent call last):")


def test_retry_countdown_delays_the_next_try(h: Harness) -> None:
    def later(self: Task) -> None:
        raise self.retry(countdown=60)

    task(h, later, bind=True).delay()
    h.run_next()
    assert h.app.broker.size(h.queue) == 1
    assert h.session.fetch([h.queue], 1, 0) == []  # not due for a minute


def test_unknown_task_is_dead_lettered_and_failed(h: Harness) -> None:
    result = h.app.send_task("nobody.home")
    h.run_next()
    assert h.record(result.id).state == FAILURE
    assert h.dead_reasons() == [
        "unknown task 'nobody.home': this worker has no tasks (see its start-up warning)"
    ]


def test_expired_message_is_dead_lettered_and_failed(h: Harness) -> None:
    ran: list[int] = []
    result = task(h, lambda: ran.append(1), name="noop").apply_async(expires=-1)
    h.run_next()
    assert ran == [] and h.record(result.id).state == FAILURE
    assert h.dead_reasons()[0].startswith("expired at")


def test_malformed_body_is_dead_lettered_and_the_next_message_runs(h: Harness) -> None:
    h.publish(b"\x00garbage")
    result = task(h, lambda: "fine", name="ok").delay()
    h.run_next()
    h.run_next()
    assert result.get(timeout=1) == "fine"
    assert h.dead_reasons()[0].startswith("malformed message")


def test_tampered_signed_message_writes_no_result() -> None:
    h = Harness(secret="k")
    result = task(h, lambda: 1, name="one").delay()
    delivery = h.fetch()
    h.session.requeue(delivery)
    tampered = delivery.body.replace(b'"one"', b'"One"')
    h.app.broker.purge(h.queue)
    h.publish(tampered)
    h.run_next()
    assert h.record(result.id) is None
    assert h.dead_reasons() == ["bad signature: message tampered with or wrong secret"]


def test_ignore_result_stores_failures_only(h: Harness) -> None:
    quiet = task(h, lambda fail: 1 / 0 if fail else 1, name="quiet", ignore_result=True)
    ok, bad = quiet.delay(False), quiet.delay(True)
    h.run_next()
    h.run_next()
    assert h.record(ok.id) is None
    assert h.record(bad.id).exc_type == "ZeroDivisionError"


def test_unserialisable_return_value_fails_clearly(h: Harness) -> None:
    result = task(h, lambda: object(), name="weird").delay()
    h.run_next()
    record = h.record(result.id)
    assert (record.state, record.exc_type) == (FAILURE, "ResultNotSerializable")
    assert h.scoreboard.read(0).failed == 1


def test_track_started_stores_started_before_the_body_runs() -> None:
    h = Harness(track_started=True)
    states: list[str] = []

    def look(self: Task) -> None:
        states.append(h.record(self.request.id).state)

    result = task(h, look, bind=True).delay()
    h.run_next()
    assert states == [STARTED]
    assert h.record(result.id).state == SUCCESS


def test_the_slot_shows_the_running_task(h: Harness) -> None:
    seen = []

    def peek(self: Task) -> None:
        slot = h.scoreboard.read(0)
        seen.append((slot.state.name, slot.task_id, slot.task_name))

    result = task(h, peek, bind=True).delay()
    h.run_next()
    assert seen == [("BUSY", result.id, "peek")]


def test_a_message_nested_too_deeply_is_dead_lettered_and_failed(h: Harness) -> None:
    h.publish(nested_too_deeply("deep-7", h.queue))
    result = task(h, lambda: "fine", name="ok").delay()
    h.run_next()
    h.run_next()
    assert result.get(timeout=1) == "fine"
    assert h.dead_reasons() == ["malformed message: nested too deeply to decode"]
    assert h.record("deep-7").exc_type == "MessageRejected"
    assert h.scoreboard.read(0).state.name == "IDLE"


def test_an_absurd_expiry_is_reported_as_a_readable_time(h: Harness) -> None:
    task(h, lambda: None, name="noop").apply_async(expires=-1e30)
    h.run_next()
    assert h.dead_reasons() == ["expired at an impossible time (-1e+30 s from 1970)"]


def test_a_reason_quoting_a_huge_message_is_cut_short(h: Harness) -> None:
    result = h.app.send_task("x" * 300_000)
    h.run_next()
    [reason] = h.dead_reasons()
    assert reason.startswith("unknown task 'xxx") and reason.endswith("(300,015 characters in all)")
    assert len(reason) <= 1000 and h.record(result.id).exc_message == reason


def test_a_retry_that_cannot_be_scheduled_fails_the_task(h: Harness) -> None:
    def later(self: Task) -> None:
        raise self.retry(countdown=1e12)  # 30,000 years

    result = task(h, later, bind=True).delay()
    h.run_next()
    record = h.record(result.id)
    assert (record.state, record.exc_type) == (FAILURE, "RetryRefused")
    assert "cannot be scheduled" in record.exc_message
    assert h.app.broker.size(h.queue) == 0


@pytest.mark.parametrize("kind", list(Rejection))
def test_each_rejection_names_an_error_a_caller_can_catch(kind: Rejection) -> None:
    assert safe_type(None, kind.exc_type, {}) is getattr(exceptions, kind.exc_type)
    rejected = MessageRejected("why", "id-1", kind=kind)
    stores = kind is not Rejection.KILLED_FOR_TIME  # the master stored that one
    assert rejected.failed_task_id == ("id-1" if stores else None)
    assert MessageRejected("why", "id-1", trusted=False, kind=kind).failed_task_id is None
