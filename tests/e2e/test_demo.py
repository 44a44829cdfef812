"""`forkq demo`, the README's main job, end to end (smaller)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest


@pytest.mark.timeout(120)
def test_demo_runs_and_reports_memory(tmp_path: object) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "forkq", "demo", "--tasks", "300", "-c", "2"],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=str(tmp_path),
        env={"COLUMNS": "120", "PATH": "/usr/bin:/bin", "TERM": "dumb"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"300 tasks done in [\d.]+s: [\d,]+ tasks/s", out)
    assert out.count("Sum of PSS (real footprint)") == 2
    assert out.count("│ child ") == 4  # two children, two tables
    saved = [float(x) for x in re.findall(r"fork shared ([\d.]+) MiB", out)]
    assert saved[0] > 40  # right after fork, most of the preloaded table is shared
    assert "exit code 0" in out
    assert list(tmp_path.iterdir()) == []  # type: ignore[attr-defined]  # nothing left behind
