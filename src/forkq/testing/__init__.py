"""pytest fixtures for testing forkq tasks; pytest loads this plugin by itself (the `pytest11`
entry point) wherever forkq is installed.

Loading it imports nothing of forkq's but its exceptions and changes nothing: fixtures act
only in the tests that ask for them.

- `forkq_app`: your app. Override it in your conftest.py.
- `forkq_eager_app`: `forkq_app` in eager mode for one test; tasks run in the test's process
  as a worker would run them (see `forkq.eager`), results stay in the process.
- `forkq_worker`: a real `forkq worker` for `forkq_app` on a temporary SQLite file, started
  for one test, with `forkq_app` pointed at the same file; stopped (killed if need be) after.
- `forkq_worker_args`: the worker's options (default `-c 2`); override to change them. Its log
  level is `info` at least (the fixture waits for a child's ready line) and `--logfile` is
  refused (the fixture reads the worker's output).
- `forkq_app_spec`: the worker's `-A` (default: found from `forkq_app`); override when the
  module the fixture finds does not import all your tasks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from forkq.app import Forkq
    from forkq.testing.worker import RunningWorker


@pytest.fixture
def forkq_app() -> Forkq:
    """Your app: override this fixture in conftest.py to return it."""
    pytest.fail(
        "the forkq fixtures need your app: define a fixture `forkq_app` in conftest.py "
        "that returns it (e.g. `from proj.tasks import app; return app`)",
        pytrace=False,
    )


@pytest.fixture
def forkq_eager_app(forkq_app: Forkq) -> Iterator[Forkq]:
    """`forkq_app`, eager for this test: `.delay()` runs the task here, at once."""
    saved = forkq_app.settings
    forkq_app.configure(eager=True)
    try:
        yield forkq_app
    finally:
        forkq_app.use_settings(saved)


@pytest.fixture
def forkq_worker_args() -> list[str]:
    """Options of the `forkq worker` that `forkq_worker` starts."""
    return ["-c", "2"]


@pytest.fixture
def forkq_app_spec(forkq_app: Forkq) -> str:
    """The worker's `-A module:attribute` for `forkq_app`."""
    from forkq.testing.worker import app_spec

    return app_spec(forkq_app)


@pytest.fixture
def forkq_worker(
    forkq_app: Forkq, forkq_app_spec: str, forkq_worker_args: list[str], tmp_path: Path
) -> Iterator[RunningWorker]:
    """A real worker for `forkq_app` on a SQLite file of this test's own, serving when the test
    starts; `forkq_app` sends to it and reads its results for the test's duration."""
    from forkq.testing.worker import RunningWorker

    url = f"sqlite:///{tmp_path}/forkq-test.sqlite3"
    saved = forkq_app.settings
    worker = RunningWorker.start(forkq_app_spec, url, forkq_worker_args, tmp_path)
    try:
        forkq_app.configure(broker_url=url, result_backend=url, eager=False)
        yield worker
    finally:
        forkq_app.use_settings(saved)
        worker.stop()
        print(f"forkq worker output ({worker.log_path}):\n{worker.log()}")  # shown on failure
