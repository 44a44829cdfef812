"""The `forkq` command, run in a subprocess as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def forkq(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`forkq ARGS` in `cwd` with no FORKQ_ settings, so on the default broker
    (sqlite:///forkq.sqlite3, in `cwd`); only its control directory is the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORKQ_")}
    return subprocess.run(
        [sys.executable, "-m", "forkq", *args],
        cwd=cwd,
        env={**env, "FORKQ_CONTROL_DIR": str(cwd / "control")},
        capture_output=True,
        text=True,
        timeout=30,
    )
