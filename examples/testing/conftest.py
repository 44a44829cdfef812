"""The one fixture forkq's pytest plugin needs from a project: its app."""

from __future__ import annotations

import pytest

from forkq import Forkq


@pytest.fixture
def forkq_app() -> Forkq:
    from proj.tasks import app

    return app
