"""Unique tasks on a real worker, on every broker: a second send while the first is pending
(or running) gives back the first; the lock goes when the task starts (or ends), when it
will never run, and when its child is killed and the redelivery ends."""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest

from forkq import Forkq, Task
from tests.conftest import E2E_APP, StartedSignal, wait_until_serving

pytestmark = pytest.mark.timeout(120)

UNIQUE_TASKS = textwrap.dedent(
    """
    @app.task(unique_for=60)
    def unique_add(x, y):
        return x + y

    @app.task(unique_for=60, unique_while="running")
    def unique_while_running(fifo, seconds):
        with open(fifo, "w") as announce:
            announce.write(f"started {os.getpid()}\\n")
        time.sleep(seconds)
        return seconds
    """
)


@pytest.fixture
def broker_url(every_broker_url: str) -> str:
    return every_broker_url


@pytest.fixture
def e2e_dir(tmp_path: Path) -> Path:
    (tmp_path / "e2eapp.py").write_text(E2E_APP + UNIQUE_TASKS)
    return tmp_path


def tasks(client: Forkq) -> tuple[Task, Task]:
    """The client's side of the worker's tasks: the same names and unique options."""

    @client.task(name="e2eapp.unique_add", unique_for=60)
    def unique_add(x: int, y: int) -> int:
        raise AssertionError("runs on the worker")

    @client.task(name="e2eapp.unique_while_running", unique_for=60, unique_while="running")
    def unique_while_running(fifo: str, seconds: float) -> float:
        raise AssertionError("runs on the worker")

    return unique_add, unique_while_running


def test_a_send_while_pending_gives_back_the_first(client: Forkq, start_worker: Any) -> None:
    unique_add, _ = tasks(client)
    first = unique_add.delay(1, 2)
    assert unique_add.delay(1, 2).id == first.id
    assert unique_add.apply_async((1, 2), priority=5).id == first.id
    other = unique_add.delay(2, 2)  # other arguments: another lock
    assert other.id != first.id
    keyed = unique_add.apply_async((5, 5), unique_key="k")
    assert unique_add.apply_async((6, 6), unique_key="k").id == keyed.id

    worker = start_worker("-c", "2")
    wait_until_serving(client, worker)
    assert first.get(timeout=30) == 3
    assert other.get(timeout=30) == 4
    assert keyed.get(timeout=30) == 10
    again = unique_add.delay(1, 2)  # the first has started (and ended): a new send
    assert again.id != first.id
    assert again.get(timeout=30) == 3


def test_held_while_running_goes_when_the_task_ends(
    client: Forkq, start_worker: Any, e2e_dir: Path
) -> None:
    _, running = tasks(client)
    worker = start_worker("-c", "1")
    wait_until_serving(client, worker)
    started = StartedSignal(e2e_dir)
    first = running.delay(started.path, 1)
    started.wait()
    assert running.delay(started.path, 1).id == first.id  # running: still the first
    assert first.get(timeout=30) == 1
    assert running.delay(started.path, 0).id != first.id  # not a pending send's lock


def test_a_pending_lock_goes_when_the_task_starts(
    client: Forkq, start_worker: Any, e2e_dir: Path
) -> None:
    worker = start_worker("-c", "1")
    wait_until_serving(client, worker)

    @client.task(name="e2eapp.announce_then_sleep", unique_for=60)
    def announce_then_sleep(fifo: str, seconds: float) -> None:
        raise AssertionError("runs on the worker")

    started = StartedSignal(e2e_dir)
    first = announce_then_sleep.delay(started.path, 1)
    started.wait()
    second = announce_then_sleep.delay(started.path, 1)  # it runs: the lock has gone
    assert second.id != first.id
    first.get(timeout=30)


def test_a_killed_child_leaks_no_lock(client: Forkq, start_worker: Any, e2e_dir: Path) -> None:
    _, running = tasks(client)
    worker = start_worker("-c", "1")
    wait_until_serving(client, worker)
    started = StartedSignal(e2e_dir)
    first = running.delay(started.path, 1)
    os.kill(started.wait(), signal.SIGKILL)
    # The redelivery announces itself on the same FIFO: a reader lets its open() through.
    again = os.open(started.path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert running.delay(started.path, 1).id == first.id  # redelivered: still held
        assert first.get(timeout=60) == 1  # run again after the kill, and ended
    finally:
        os.close(again)
    assert running.delay(started.path, 0).id != first.id


def test_a_task_that_will_never_run_lets_its_lock_go(client: Forkq, start_worker: Any) -> None:
    unique_add, _ = tasks(client)
    expired = unique_add.apply_async((7, 7), expires=0.001)  # dead-lettered, never run
    worker = start_worker("-c", "1")
    wait_until_serving(client, worker)
    worker.wait_for_log("dead-lettering message")
    again = unique_add.delay(7, 7)
    assert again.id != expired.id
    assert again.get(timeout=30) == 14
    [letter] = client.broker.dead_letters()
    assert letter.reason.startswith("expired")
