"""The `h` fixture: an executor and its harness (tests/worker/harness.py); `stop`: a child's
stop signal, SIGTERM's handler put back after."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from forkq.pool.child import StopSignal
from tests.worker.harness import Harness


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.scoreboard.close()


@pytest.fixture
def stop() -> Iterator[StopSignal]:
    previous = signal.getsignal(signal.SIGTERM)
    yield StopSignal()
    signal.signal(signal.SIGTERM, previous)
