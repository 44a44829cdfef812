"""Inspection of a running worker, process titles, and what fork keeps shared."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from forkq import Forkq
from forkq.pool.process_memory import read_process_memory
from tests.conftest import StartedSignal, wait_until_serving

pytestmark = pytest.mark.timeout(120)
MB = 2**20


@pytest.fixture
def control_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "control"
    monkeypatch.setenv("FORKQ_CONTROL_DIR", str(path))  # inherited by workers and the CLI
    return path


def inspect(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forkq", "inspect", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "COLUMNS": "200"},
    )


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def test_inspect_a_busy_worker(
    client: Forkq, start_worker: Any, e2e_dir: Path, control_dir: Path
) -> None:
    worker = start_worker("-c", "2", "--prefetch", "1", "-l", "info", "-n", "w1@%n")
    named = f"w1@{socket.gethostname().partition('.')[0]}"  # %n: the host name before a dot
    wait_until_serving(client, worker)
    started = StartedSignal(e2e_dir)
    busy_task = client.send_task("e2eapp.announce_then_sleep", (started.path, 60))
    busy = started.wait()

    pong = inspect("ping", "--pid", str(worker.pid))
    assert pong.stdout.strip() == f"pong from {named} (forkq: e2e, master pid {worker.pid})"

    [stats] = json.loads(inspect("stats", "--json").stdout)["replies"].values()
    assert stats["hostname"] == named
    assert (stats["pid"], stats["concurrency"], stats["done"]) == (worker.pid, 2, 1)  # the ping
    by_pid = {c["pid"]: c for c in stats["children"]}
    assert set(by_pid) == set(worker.children())
    running = by_pid[busy]
    assert (running["state"], running["task"], running["task_id"]) == (
        "busy",
        "e2eapp.announce_then_sleep",
        busy_task.id,
    )
    assert running["runtime"] >= 0

    active = inspect("active")
    assert busy_task.id in active.stdout and "e2eapp.announce_then_sleep" in active.stdout

    [memory] = json.loads(inspect("memory", "--json").stdout)["replies"].values()
    assert {p["pid"] for p in memory["processes"]} == {worker.pid, *worker.children()}
    assert memory["totals"]["cow_saving"] > 0
    assert "Sum of PSS (real footprint)" in inspect("memory").stdout

    assert cmdline(busy).startswith("forkq: e2e child ")
    assert cmdline(busy).endswith(" busy e2eapp.announce_then_sleep")
    assert cmdline(worker.pid) == "forkq: e2e master [2 children]"

    idle = next(pid for pid in worker.children() if pid != busy)
    assert cmdline(idle).endswith(" idle")
    os.kill(idle, signal.SIGKILL)
    worker.wait_for_log("killed by SIGKILL")
    [stats] = json.loads(inspect("stats", "--json", "--pid", str(worker.pid)).stdout)[
        "replies"
    ].values()
    assert stats["restarts"] == 1


def test_inspect_with_no_worker_says_so_in_one_line(control_dir: Path) -> None:
    done = inspect("stats")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no running worker found" in done.stderr


def test_a_preloaded_structure_stays_shared_after_fork(client: Forkq, start_worker: Any) -> None:
    worker = start_worker("-c", "2", "-l", "warning", env={"E2E_PRELOAD_MB": "120"})
    wait_until_serving(client, worker)
    master = read_process_memory(worker.pid)
    assert master is not None and master.rss > 120 * MB
    # A full collection in a child walks every tracked object it can see; the frozen
    # preload is not among them, so its pages are not written and stay the master's.
    pid = client.send_task("e2eapp.full_collection").get(timeout=30)
    child = read_process_memory(pid)
    assert child is not None
    assert child.uss < 16 * MB, f"child private memory {child.uss / MB:.1f} MiB"
    assert child.shared > 100 * MB
