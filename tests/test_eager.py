"""Eager mode: publishing runs the task in the caller, as a worker would, with no server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forkq import FAILURE, PENDING, SUCCESS, Forkq, ResultTimeout, Task, TaskFailed


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Forkq]:
    """An eager app with the default broker URL, in an empty directory: nothing may touch it."""
    monkeypatch.chdir(tmp_path)
    eager = Forkq("proj", eager=True)
    yield eager
    eager.close()
    assert list(tmp_path.iterdir()) == []  # no ./forkq.sqlite3: no broker, no backend opened


def test_delay_runs_the_task_and_returns_a_ready_result(app: Forkq) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    result = add.delay(2, 3)
    assert (result.state, result.get(timeout=0)) == (SUCCESS, 5)
    assert app.AsyncResult(result.id).get(timeout=0) == 5
    assert add.apply_async((1, 1), countdown=60).get(timeout=0) == 2  # not waited for
    assert app.send_task(add.name, args=(4, 4)).get(timeout=0) == 8
    assert [r.get(timeout=0) for r in add.map([(1, 2), (3, 4)])] == [3, 7]


def test_arguments_travel_as_json_as_in_production(app: Forkq) -> None:
    @app.task
    def kinds(*values: Any) -> list[str]:
        return [type(v).__name__ for v in values]

    assert kinds.delay((1, 2), {"a": 1}).get(timeout=0) == ["list", "dict"]
    with pytest.raises(TypeError, match="cannot be sent as JSON"):
        kinds.delay(object())


def test_the_environment_turns_it_on_when_the_app_is_made(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FORKQ_EAGER", "1")
    app = Forkq("proj")
    monkeypatch.delenv("FORKQ_EAGER")
    assert app.task(name="one")(lambda: 1).delay().get(timeout=0) == 1
    assert list(tmp_path.iterdir()) == []


def test_retry_runs_again_at_once_up_to_max_retries(app: Forkq) -> None:
    tries: list[int] = []

    @app.task(bind=True, max_retries=2, default_retry_delay=3600)
    def flaky(self: Task) -> None:
        tries.append(self.request.retries)
        try:
            raise OSError("down")
        except OSError as exc:
            self.retry(exc=exc)  # without `raise`

    result = flaky.delay()
    assert tries == [0, 1, 2]
    assert result.state == FAILURE
    with pytest.raises(TaskFailed) as failed:
        result.get(timeout=0)
    assert (failed.value.exc_type, failed.value.exc_message) == ("OSError", "down")


def test_a_retry_that_then_succeeds_stores_the_success(app: Forkq) -> None:
    @app.task(bind=True, autoretry_for=(ConnectionError,), retry_backoff=True)
    def second_time_lucky(self: Task) -> int:
        if self.request.retries == 0:
            raise ConnectionError("refused")
        return self.request.retries

    assert second_time_lucky.delay().get(timeout=0) == 1


def test_an_error_working_out_a_retry_is_the_tasks_failure_not_the_callers(app: Forkq) -> None:
    @app.task(autoretry_for=(OSError,), retry_backoff=True, retry_backoff_max="600")
    def misconfigured() -> None:
        raise ConnectionError("refused")

    result = misconfigured.delay()
    with pytest.raises(TaskFailed, match="TypeError") as failed:
        result.get(timeout=0)
    assert "ConnectionError: refused" in failed.value.remote_traceback


def test_a_failure_is_stored_with_the_tasks_own_traceback(app: Forkq) -> None:
    @app.task
    def explode() -> None:
        raise KeyError("missing")

    result = explode.delay()
    with pytest.raises(TaskFailed) as failed:
        result.get(timeout=0)
    assert failed.value.exc_type == "KeyError"
    assert "in explode" in failed.value.remote_traceback
    assert "forkq/" not in failed.value.remote_traceback


def test_what_a_worker_would_reject_fails_with_the_reason(app: Forkq) -> None:
    with pytest.raises(TaskFailed, match=r"unknown task 'nobody\.home'"):
        app.send_task("nobody.home").get(timeout=0)

    @app.task(bind=True)
    def forever(self: Task) -> None:
        self.retry(countdown=1e12)  # 30,000 years

    assert forever.delay().result.exc_type == "RetryRefused"


def test_ignored_results_stay_pending_as_with_a_worker(app: Forkq) -> None:
    ran: list[int] = []

    @app.task(ignore_result=True)
    def note(x: int) -> int:
        ran.append(x)
        return x

    assert note.delay(7).state == PENDING
    assert ran == [7]


def test_a_timeout_asks_no_broker_and_says_why(app: Forkq) -> None:
    @app.task(ignore_result=True)
    def note() -> None: ...

    result = note.delay()
    for handle, why in [
        (result, f"{note.name} ignores its result (ignore_result)"),
        (app.AsyncResult(result.id), "no result is stored here for this id"),
    ]:
        with pytest.raises(ResultTimeout) as timeout:
            handle.get(timeout=0.01)
        assert why in str(timeout.value) and "worker" not in str(timeout.value)
    # the fixture checks that no ./forkq.sqlite3 (the default broker) was made


def test_a_task_may_call_tasks_and_itself(app: Forkq) -> None:
    @app.task(bind=True)
    def countdown(self: Task, n: int) -> list[int]:
        inner = countdown.delay(n - 1).get(timeout=0) if n else []
        return [self.request.retries, n, *inner]

    assert countdown.delay(2).get(timeout=0) == [0, 2, 0, 1, 0, 0]


def test_switching_an_app_to_eager_and_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.sqlite3"
    app = Forkq("proj", broker=url)
    add = app.task(name="add")(lambda x, y: x + y)
    saved = app.settings
    app.configure(eager=True)
    assert add.delay(1, 2).get(timeout=0) == 3
    app.use_settings(saved)
    pending = add.delay(1, 2)
    assert (pending.state, app.broker.size("default")) == (PENDING, 1)
    app.close()


def test_a_worker_refuses_an_eager_app(e2e_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "forkq", "worker", "-A", "e2eapp"],
        cwd=e2e_dir,
        env={"FORKQ_EAGER": "1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("forkq: error: the app is in eager mode"), done.stderr
