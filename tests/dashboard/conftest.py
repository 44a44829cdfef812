"""Fixtures of the browser tests: a real `forkq worker` on Redis (default URL form), the
dashboard as a subprocess, and headless Chromium. Each is killed when its test ends.

The worker runs with -E: what the pages show of it comes from its own events. `Reporter`
publishes a test's own events (hostile names, arguments, other workers) into the same store.
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
from tests.conftest import (
    WorkerProcess,
    engine_url,
    redis_test_url,
    server_port,
    wait_until_serving,
)
from tests.dashboard.browser import DashboardProcess, chromium, require_browser


class Reporter:
    """Publishes a test's own events where the dashboard reads them."""

    def __init__(self, client: Forkq) -> None:
        self.client = client

    def publish(self, *bodies: bytes) -> None:
        self.client.backend.add_events(list(bodies), 10_000)


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A SQLite store of the test's own: the route tests' broker, results and events."""
    return f"sqlite:///{tmp_path}/store.sqlite3"


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
def worker_concurrency() -> str:
    """The worker's -c; a test parametrizes it to start with more children."""
    return "1"


@pytest.fixture
def worker(
    e2e_dir: Path, redis_url: str, redis_client: Forkq, worker_name: str, worker_concurrency: str
) -> Iterator[WorkerProcess]:
    started = WorkerProcess(e2e_dir, redis_url, "-c", worker_concurrency, "-n", worker_name, "-E")
    try:
        wait_until_serving(redis_client, started)
        yield started
    finally:
        started.stop()


@pytest.fixture
def reporter(redis_client: Forkq) -> Reporter:
    return Reporter(redis_client)


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
