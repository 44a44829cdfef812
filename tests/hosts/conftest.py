"""Every test of the harness also checks that its proxy loop logged no complaint (an exception
never retrieved, a task destroyed while pending, a send on a closed socket)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def no_asyncio_complaints(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    yield
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    complaints = [r for r in records if r.name == "asyncio" and r.levelno >= logging.WARNING]
    assert not complaints, "\n".join(r.getMessage() for r in complaints)
