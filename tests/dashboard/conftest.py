"""Fixtures of the browser tests: a real `forkq worker` on Redis (default URL form), the
dashboard as a subprocess, and headless Chromium. Each is killed when its test ends.

Events: a worker that emits them (`forkq worker -E`) is started with -E; until every worker
does, `Reporter` publishes the events a test needs into the same store, as a worker would.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from forkq.app import Forkq
from forkq.events import TaskEventKind
from tests.conftest import (
    WorkerProcess,
    engine_url,
    redis_test_url,
    server_port,
    wait_until_serving,
)
from tests.dashboard.browser import DashboardProcess, chromium, require_browser
from tests.dashboard.helpers import heartbeat, task_event


def worker_emits_events() -> bool:
    from forkq.cli.worker import worker

    return any("-E" in option.opts for option in worker.params)


class Reporter:
    """Publishes a worker's events where the dashboard reads them (skipped when the worker
    emits its own)."""

    def __init__(self, client: Forkq, host: str) -> None:
        self.client, self.host, self.needed = client, host, not worker_emits_events()

    def heartbeat(self) -> None:
        if self.needed:
            self.client.backend.add_events([heartbeat(self.host, worker=self.host)], 10_000)

    def finished(self, task_id: str, kind: TaskEventKind = TaskEventKind.SUCCEEDED) -> None:
        if self.needed:
            self.client.backend.add_events([task_event(kind, task_id)], 10_000)

    def publish(self, *bodies: bytes) -> None:
        """Events no worker sends (a test's own: hostile names, arguments)."""
        self.client.backend.add_events(list(bodies), 10_000)


@pytest.fixture
def redis_url() -> Iterator[str]:
    yield from engine_url("redis", redis_test_url())


@pytest.fixture
def redis_client(e2e_dir: Path, redis_url: str) -> Iterator[Forkq]:
    app = Forkq("e2e", broker=redis_url)
    yield app
    app.close()


@pytest.fixture
def worker_name() -> str:
    return f"dash-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def worker(
    e2e_dir: Path, redis_url: str, redis_client: Forkq, worker_name: str
) -> Iterator[WorkerProcess]:
    events = ["-E"] if worker_emits_events() else []
    started = WorkerProcess(e2e_dir, redis_url, "-c", "1", "-n", worker_name, *events)
    try:
        wait_until_serving(redis_client, started)
        yield started
    finally:
        started.stop()


@pytest.fixture
def reporter(redis_client: Forkq, worker_name: str) -> Reporter:
    return Reporter(redis_client, worker_name)


@pytest.fixture
def start_dashboard(e2e_dir: Path, redis_url: str) -> Iterator[Callable[..., DashboardProcess]]:
    with contextlib.ExitStack() as started:

        def start(*options: str) -> DashboardProcess:
            process = DashboardProcess(e2e_dir, redis_url, server_port(), *options)
            started.callback(process.stop)
            return process

        yield start


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str, timeout: float = 15.0) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)
    except TimeoutException:
        raise AssertionError(f"{what} not seen within {timeout}s") from None


def now() -> float:
    return time.time()
