"""The `h` fixture: an executor on the memory engine (tests/worker/harness.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.worker.harness import Harness


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.scoreboard.close()
