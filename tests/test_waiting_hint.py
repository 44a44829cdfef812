"""A `get()` that times out says whether any worker was seen consuming the task's queue on that
broker: a real worker's heartbeats name its queues (`-Q`), on every engine."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from forkq import Forkq, ResultTimeout
from forkq.engines.contract import Sighting
from forkq.engines.sqlite.file import shown_url
from forkq.result import AsyncResult
from tests.conftest import WorkerProcess, wait_until_serving


@pytest.fixture
def broker_url(every_broker_url: str) -> str:
    return every_broker_url


def _seen(client: Forkq, queue: str, timeout: float = 10.0) -> list[Sighting]:
    """Bounded poll: the master's first heartbeat comes with its first tick, which nothing
    signals to the test."""
    deadline = time.monotonic() + timeout
    while not (seen := client.broker.consumers_seen(queue, 30)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return seen


def _timeout_of(result: AsyncResult) -> str:
    with pytest.raises(ResultTimeout) as caught:
        result.get(timeout=0.2)
    return str(caught.value)


@pytest.mark.timeout(90)
def test_a_timeout_says_who_consumes_the_queue(
    client: Forkq, start_worker: Callable[..., WorkerProcess], e2e_dir: Path
) -> None:
    worker = start_worker("-c", "1", "-Q", "default,hinted")
    wait_until_serving(client, worker)
    [sighting] = _seen(client, "hinted")
    assert sighting.worker  # the worker's id, as its master beats

    said = _timeout_of(client.send_task("e2eapp.add", (1, 2), queue="nobody"))
    where = shown_url(client.settings.broker_url)
    assert f"no worker has consumed queue 'nobody' on {where} in the last 30 s" in said
    if where.startswith("sqlite"):  # the resolved file, whatever the current directory
        assert where == f"sqlite:///{os.path.abspath(e2e_dir / 'forkq.sqlite3')}"
    else:
        assert "guest:***@" in where or where.startswith("redis")

    busy = client.send_task("e2eapp.slow_add", (1, 2, 3), queue="hinted")
    said = _timeout_of(client.send_task("e2eapp.add", (1, 2), queue="hinted"))
    assert f"1 worker consumes queue 'hinted' on {where}" in said
    assert "may still be queued behind others" in said
    assert busy.get(timeout=30) == 3


def test_a_bare_id_knows_no_queue_and_adds_nothing(client: Forkq) -> None:
    said = _timeout_of(client.AsyncResult("no-such-task"))
    assert said == "task no-such-task not ready after 0.2s"


def test_a_broker_that_cannot_answer_never_hides_the_timeout(tmp_path: Path) -> None:
    app = Forkq(broker="redis://127.0.0.1:1/0", backend=f"sqlite:///{tmp_path}/r.sqlite3")
    said = _timeout_of(AsyncResult("some-task", app, queue="default"))
    assert said == "task some-task not ready after 0.2s"
