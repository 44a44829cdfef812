"""The chaos suite's fixtures: the e2e app with the recording task, a client and worker
starter on it, and the figures: every line is repeated in the terminal summary (shown
without -s too)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from forkq import Forkq, TaskFailed
from forkq.result import AsyncResult
from tests.chaos.harness import CHAOS_TASKS, PRINTED, figures_path
from tests.conftest import E2E_APP, WorkerProcess, results_url_for

StartWorker = Callable[..., WorkerProcess]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if PRINTED:
        terminalreporter.section("chaos figures")
        for line in PRINTED:
            terminalreporter.write_line(line)
        terminalreporter.write_line(f"(also in {figures_path()})")


@pytest.fixture
def chaos_dir(tmp_path: Path) -> Path:
    (tmp_path / "e2eapp.py").write_text(E2E_APP + CHAOS_TASKS)
    return tmp_path


@contextlib.contextmanager
def chaos_client(directory: Path, url: str) -> Iterator[Forkq]:
    app = Forkq("e2e", broker=url, backend=results_url_for(url, directory))
    try:
        yield app
    finally:
        app.close()


@contextlib.contextmanager
def workers(directory: Path, url: str) -> Iterator[StartWorker]:
    """Starts `forkq worker -A e2eapp ARGS` processes; every one is killed on the way out."""
    with contextlib.ExitStack() as started:

        def start(*args: str) -> WorkerProcess:
            worker = WorkerProcess(directory, url, *args)
            started.callback(worker.stop)
            return worker

        yield start


DEAD_LIMIT = 10_000  # more than any scenario sends


def dead_count(client: Forkq) -> int:
    """The dead letters of the default queue (every scenario's tasks go there)."""
    return len(client.broker.dead_letters(client.settings.default_queue, DEAD_LIMIT))


def drain(results: list[AsyncResult[object]], timeout: float) -> None:
    """Until every task has an outcome: its result, or its failure (a task whose process died
    `max_deliveries` times fails as WorkerLost and is dead-lettered)."""
    for result in results:
        with contextlib.suppress(TaskFailed):
            result.get(timeout=timeout)
