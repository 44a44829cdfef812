"""The examples are runnable and check what they print: run each one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


def test_there_are_examples() -> None:
    assert {"copy_on_write_list.py", "connections.py", "memory_isolation.py"} <= set(SCRIPTS)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs(script: str) -> None:
    done = subprocess.run(
        [sys.executable, script], cwd=EXAMPLES, capture_output=True, text=True, timeout=110
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip()


@pytest.mark.timeout(120)
def test_the_testing_example_passes_with_the_pytest_plugin() -> None:
    """examples/testing: eager tests and one on a real worker, through forkq's pytest plugin
    as an installed forkq registers it (the `pytest11` entry point)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/testing"],
        cwd=EXAMPLES.parent,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
