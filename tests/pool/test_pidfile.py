"""`--pidfile`: one live worker per file, kept across a HUP's re-exec, stale files taken over."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from forkq import Forkq, exitcodes
from forkq.pool.pidfile import PidFile, PidFileHeld
from tests.conftest import wait_until_serving

HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.lockf(fd, fcntl.LOCK_EX)
os.write(fd, b"%d\\n" % os.getpid())
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_stale_pidfile_is_taken_over_and_removed_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "worker.pid"
    path.write_text("999999999\n")  # a process that died without removing it
    with PidFile.claim(str(path)):
        assert path.read_text() == f"{os.getpid()}\n"
    assert not path.exists()


def test_a_pidfile_another_process_holds_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "worker.pid"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(PidFileHeld, match=f"held by worker pid {holder.pid}:"):
            PidFile.claim(str(path))
        assert path.read_text() == f"{holder.pid}\n"  # left as it was
    finally:
        holder.kill()
        holder.wait(timeout=10)


@contextmanager
def rival(path: Path) -> Iterator[list[str]]:
    """Another process's view: tries to lock the pidfile as long as the block runs; what it
    yields lists the times it got the lock."""
    got: list[str] = []
    done = threading.Event()
    fd = os.open(path, os.O_RDWR)

    def probe() -> None:
        while not done.wait(0.001):
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue
            fcntl.lockf(fd, fcntl.LOCK_UN)
            got.append("locked")

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    try:
        yield got
    finally:
        done.set()
        thread.join(timeout=5)
        os.close(fd)


@pytest.mark.timeout(120)
def test_a_second_worker_refuses_the_pidfile_before_and_after_a_hup(
    client: Forkq, start_worker: Any, e2e_dir: Path
) -> None:
    pidfile = e2e_dir / "worker.pid"
    first = start_worker("-c", "1", "--pidfile", str(pidfile), "-l", "info")
    wait_until_serving(client, first)

    def second_refused() -> None:
        second = start_worker("-c", "1", "--pidfile", str(pidfile))
        assert second.wait(timeout=60) == exitcodes.USAGE
        assert second.log() == (
            f"forkq: error: pidfile {pidfile} is held by worker pid {first.pid}: stop that "
            f"worker first, or give this one another --pidfile\n"
        )
        assert pidfile.read_text() == f"{first.pid}\n"

    second_refused()
    with rival(pidfile) as got:
        first.signal(signal.SIGHUP)
        first.wait_for_log("starting 1 children", count=2)  # the re-executed master is up
    assert got == []  # the lock was held through the re-exec
    second_refused()
    first.signal(signal.SIGTERM)
    assert first.wait(timeout=60) == 0
    assert not pidfile.exists()
