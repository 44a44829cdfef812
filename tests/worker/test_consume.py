"""A child's consume loop, in this process, on the memory engine: its one session, what it
gives back when it leaves, and a task's process that dies (fork per task)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from forkq import Forkq, TaskRevoked
from forkq.engines.contract import Consumer, ResultBackend, Revocations
from forkq.exceptions import BackendUnavailable
from forkq.pool.child import EXIT_BOOT_FAILED, EXIT_CRASHED, EXIT_OK, StopSignal
from forkq.pool.scoreboard import Scoreboard
from forkq.worker.consume import ConsumeOptions, ConsumeProgram

pytestmark = pytest.mark.timeout(30)

QUEUE = "default"


@pytest.fixture
def app() -> Iterator[Forkq]:
    app = Forkq("t", broker=f"memory://{uuid.uuid4().hex}")

    @app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="die")
    def die() -> None:
        os._exit(1)

    yield app
    app.close()


def run_child(app: Forkq, stop: StopSignal, prefetch: int, max_tasks: int | None = None) -> int:
    options = ConsumeOptions("w", (QUEUE,), prefetch, max_tasks=max_tasks)
    program = ConsumeProgram(app, options)
    board = Scoreboard(1)
    try:
        return program.run_child(0, board.writer(0), stop)
    finally:
        board.close()


def free_deliveries(app: Forkq) -> dict[str, int]:
    """The task name of each message free in the queue, with its next delivery count."""
    taker = app.broker.consumer(Consumer.of_child("other", 0, 1), app.backend)
    return {app.codec.decode(d.body).task: d.delivery_count for d in taker.fetch([QUEUE], 9, 0)}


def test_a_child_runs_its_budget_then_leaves(app: Forkq, stop: StopSignal) -> None:
    results = [app.send_task("add", (n, 1)) for n in range(3)]
    assert run_child(app, stop, prefetch=3, max_tasks=2) == EXIT_OK
    assert [r.get(timeout=1) for r in results[:2]] == [1, 2]
    assert free_deliveries(app) == {"add": 1}  # never fetched: no more than the budget


def test_a_stopped_child_gives_back_what_it_prefetched_uncounted(
    app: Forkq, stop: StopSignal
) -> None:
    @app.task(name="halt")
    def halt() -> None:
        stop.requested = True  # SIGTERM while the task runs

    done = app.send_task("halt")
    app.send_task("add", (1, 1))  # fetched in the same batch, not started
    assert run_child(app, stop, prefetch=2) == EXIT_OK
    assert done.get(timeout=1) is None
    assert free_deliveries(app) == {"add": 1}


def test_a_task_process_that_dies_charges_its_message_only(app: Forkq, stop: StopSignal) -> None:
    app.send_task("die")
    app.send_task("add", (1, 1))  # prefetched with it
    assert run_child(app, stop, prefetch=2, max_tasks=1) == EXIT_CRASHED
    assert free_deliveries(app) == {"die": 2, "add": 1}


def test_a_task_process_whose_hook_fails_charges_no_message(app: Forkq, stop: StopSignal) -> None:
    @app.on_after_fork
    def broken() -> None:
        raise RuntimeError("no database")

    app.send_task("add", (1, 1))
    assert run_child(app, stop, prefetch=1, max_tasks=1) == EXIT_BOOT_FAILED
    assert free_deliveries(app) == {"add": 1}


def test_a_child_that_cannot_read_the_revoked_ids_fetches_nothing_until_it_can(
    app: Forkq, stop: StopSignal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The result backend is down when the child boots: it does not run a task revoked before
    it could read the revoked ids, but waits, backing off, and reads them once it is back."""
    revoked, kept = app.send_task("add", (1, 1)), app.send_task("add", (2, 2))
    app.backend.revoke([revoked.id], 60)
    read = type(app.backend).revocations
    attempts: list[int] = []

    def down_twice(backend: ResultBackend, since: int = 0) -> Revocations:
        attempts.append(since)
        if len(attempts) <= 2:  # the boot's read and the first retry
            raise BackendUnavailable("connection refused")
        return read(backend, since)

    monkeypatch.setattr(type(app.backend), "revocations", down_twice)
    assert run_child(app, stop, prefetch=2, max_tasks=2) == EXIT_OK
    with pytest.raises(TaskRevoked):
        revoked.get(timeout=1)
    assert kept.get(timeout=1) == 4 and len(attempts) >= 3
