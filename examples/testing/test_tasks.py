"""Testing tasks with forkq's pytest plugin: eagerly in the test's process, and on a real
worker. Run with `pytest examples/testing`."""

from __future__ import annotations

import pytest
from proj.tasks import ATTEMPTS, add, divide, flaky

from forkq import Forkq, TaskFailed
from forkq.testing.worker import RunningWorker


def test_add(forkq_eager_app: Forkq) -> None:
    assert add.delay(2, 3).get(timeout=1) == 5


def test_retries_run_at_once_in_eager_mode(forkq_eager_app: Forkq) -> None:
    ATTEMPTS.clear()
    assert flaky.delay(2).get(timeout=1) == "done after 2 retries"
    assert ATTEMPTS == [0, 1, 2]
    with pytest.raises(TaskFailed) as failed:
        flaky.delay(10).get(timeout=1)  # more failures than max_retries
    assert failed.value.exc_type == "ConnectionError"


def test_arguments_must_be_json_as_in_production(forkq_eager_app: Forkq) -> None:
    with pytest.raises(TypeError, match="cannot be sent as JSON"):
        add.delay(object(), 3)


def test_a_real_worker(forkq_worker: RunningWorker) -> None:
    assert add.delay(2, 3).get(timeout=30) == 5
    assert flaky.delay(1).get(timeout=30) == "done after 1 retries"
    with pytest.raises(TaskFailed) as failed:
        divide.delay(1, 0).get(timeout=30)
    assert failed.value.exc_type == "ZeroDivisionError"
    assert "in divide" in failed.value.remote_traceback
