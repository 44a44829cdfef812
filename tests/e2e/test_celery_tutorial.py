"""Celery's "First steps" and "Next steps" tutorials, ported in examples/celery_tutorial, run as
a user runs them: `forkq worker -A proj` started in that directory, on SQLite and on
Redis with the URLs users write, and the tutorial's calls made from this process."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

from forkq import AsyncResult, TaskFailed
from forkq.demo.process import worker_process
from forkq.states import PENDING, SUCCESS
from tests.conftest import engine_url

pytestmark = pytest.mark.timeout(90)

TUTORIAL = Path(__file__).resolve().parents[2] / "examples" / "celery_tutorial"
COUNTDOWN = 1.0
DUE_SLACK = 0.005  # brokers keep due times to the millisecond


@pytest.fixture(params=["sqlite", "redis"])
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLite: a plain file path, in the test's own directory. Redis: the URL users write,
    on the tests' database, with a key prefix of this test's own so runs never collide."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/forkq.sqlite3"
        return
    yield from engine_url("redis", f"redis://localhost:6379/15?prefix=tutorial-{uuid.uuid4().hex}")


@pytest.fixture
def tasks(broker_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """`proj.tasks`, imported as a caller would, its app pointed at the test's broker."""
    monkeypatch.syspath_prepend(str(TUTORIAL))
    import proj.celery
    import proj.tasks

    proj.celery.app.configure(broker_url=broker_url)
    yield proj.tasks
    proj.celery.app.close()


@contextmanager
def tutorial_worker(url: str, log: Path, *args: str) -> Iterator[None]:
    """`forkq worker -A proj ARGS` in the tutorial's directory; its output goes to `log`
    (printed on leaving, so a failing test shows it). It must stop cleanly on TERM."""
    try:
        with (
            log.open("wb") as output,
            worker_process(
                "proj", url, "-l", "info", *args, cwd=str(TUTORIAL), output=output
            ) as worker,
        ):
            yield
    finally:
        print(log.read_text())
    assert worker.returncode == 0


def finished_at(result: AsyncResult) -> float:
    done = result.date_done
    assert done is not None
    return done.timestamp()


def test_first_and_next_steps(tasks: ModuleType, broker_url: str, tmp_path: Path) -> None:
    with tutorial_worker(broker_url, tmp_path / "worker.log", "-c", "2"):
        sent = time.time()
        later = tasks.add.apply_async((2, 2), countdown=COUNTDOWN)
        flaky = tasks.fetch.delay(2)  # down for 2 attempts: succeeds on the third
        hopeless = tasks.fetch.delay(9)  # down longer than max_retries (3) allows
        first = tasks.add.delay(4, 4)
        assert first.get(timeout=30) == 8  # the first call also waits for the worker to boot
        assert first.ready() and first.state == SUCCESS
        assert tasks.mul.delay(8, 8).get(timeout=10) == 64
        assert tasks.xsum.delay([1, 2, 3, 4]).get(timeout=10) == 10
        assert later.get(timeout=10) == 4
        assert flaky.get(timeout=10) == 3
        with pytest.raises(TaskFailed) as failed:
            hopeless.get(timeout=10)
    assert isinstance(failed.value, ConnectionError)  # `except ConnectionError:` works too
    assert failed.value.exc_type == "ConnectionError"
    assert "attempt 4" in failed.value.exc_message  # the first try and 3 retries
    assert finished_at(later) >= sent + COUNTDOWN - DUE_SLACK
    assert finished_at(flaky) >= sent + 2 * tasks.RETRY_COUNTDOWN - DUE_SLACK
    assert finished_at(hopeless) >= sent + 3 * tasks.RETRY_COUNTDOWN - DUE_SLACK


def test_routed_tasks_run_only_where_their_queue_is_consumed(
    tasks: ModuleType, broker_url: str, tmp_path: Path
) -> None:
    default_log, hipri_log = tmp_path / "default.log", tmp_path / "hipri.log"
    with tutorial_worker(broker_url, default_log, "-c", "1"):
        by_call = tasks.add.apply_async((2, 3), queue="hipri")
        by_option = tasks.urgent_add.delay(4, 5)
        # Sent after them: once this is served, the default worker has had its chance.
        assert tasks.add.delay(1, 1).get(timeout=30) == 2
        assert by_call.state == PENDING and by_option.state == PENDING
        with tutorial_worker(broker_url, hipri_log, "-c", "1", "-Q", "hipri"):
            assert by_call.get(timeout=30) == 5
            assert by_option.get(timeout=30) == 9
    for task_id in (by_call.id, by_option.id):
        assert task_id in hipri_log.read_text()
        assert task_id not in default_log.read_text()
