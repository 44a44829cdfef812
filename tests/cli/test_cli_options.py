"""`forkq call` and `forkq worker` options a Celery user brings: queues, eta, expires, JSON
arguments, the worker's name, memory with units, and the start-up banner."""

from __future__ import annotations

import signal
import socket
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

import click
import pytest

from forkq import Forkq
from forkq.cli.worker_options import machine_memory, memory_size
from tests.commands import forkq
from tests.conftest import WorkerProcess

pytestmark = pytest.mark.timeout(60)


def queued(directory: Path) -> list[tuple[str, float, bytes]]:
    """(queue, due time, body) of the messages waiting in the default SQLite file."""
    with sqlite3.connect(directory / "forkq.sqlite3") as conn:
        return conn.execute("SELECT queue, visible_at, body FROM forkq_messages").fetchall()


def test_call_sends_queue_eta_expires_and_json_arguments(tmp_path: Path) -> None:
    eta = datetime(2099, 5, 1, 8, 0, tzinfo=timezone.utc)
    sent = forkq(
        tmp_path,
        "call",
        "proj.add",
        "--args",
        '[2, "x"]',
        "--kwargs",
        '{"z": [1]}',
        "-Q",
        "high",
        "--eta",
        "2099-05-01T10:00:00+02:00",
        "--expires",
        "2099-05-02T08:00:00Z",
    )
    assert sent.returncode == 0, sent.stderr
    assert sent.stderr == f"forkq: broker sqlite:///{tmp_path}/forkq.sqlite3\n"
    before = time.time()
    assert forkq(tmp_path, "call", "proj.add", "--expires", "90").returncode == 0
    [(queue, due, body), (queue2, _, body2)] = queued(tmp_path)
    codec = Forkq("reader").codec  # the default settings, as the command used
    message = codec.decode(body)
    assert (queue, message.queue, message.task) == ("high", "high", "proj.add")
    assert (message.args, message.kwargs) == ([2, "x"], {"z": [1]})
    assert due == pytest.approx(eta.timestamp(), abs=1)
    assert message.expires == eta.timestamp() + 86400
    later = codec.decode(body2)
    assert queue2 == "default" and later.expires is not None
    assert before + 89 <= later.expires <= time.time() + 91


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["call", "x", "--eta", "2099-05-01T10:00:00"], "has no UTC offset; add one"),
        (["call", "x", "--eta", "tomorrow"], "give an ISO 8601 time"),
        (["call", "x", "--expires", "-1"], "give seconds from 0, or an ISO 8601 time"),
        (["call", "x", "--args", '{"a": 1}'], "must be a JSON array"),
        (["call", "x", "--args", "[1"], "'--args': not JSON"),
        (["call", "x", "1", "--args", "[1]"], "as ARGS or as --args JSON, not both"),
        (["call", "x", "--countdown", "1", "--eta", "2099-01-01T00:00Z"], "--countdown or --eta"),
        (["worker", "-A", "e2eapp", "-n", "a%q"], "unknown %q (use %h, %n, %d or %%)"),
        (["worker", "-A", "e2eapp", "-n", "a/b"], "letters, digits or . _ @ + -"),
        (["worker", "-A", "e2eapp", "--max-memory-per-child", "12XB"], "such as 200MB, 1.5GiB"),
        (["worker", "-A", "e2eapp", "--max-memory-per-child", "0"], "give a size above 0"),
        (["worker", "-A", "e2eapp", "-l", "loud"], "critical"),
    ],
)
def test_bad_values_get_one_line(e2e_dir: Path, args: list[str], hint: str) -> None:
    done = forkq(e2e_dir, *args)
    assert (done.returncode, done.stdout) == (2, "")
    [line] = done.stderr.splitlines()
    assert line.startswith("forkq: error: ") and hint in line, line


def test_a_memory_limit_written_for_celery_is_refused_with_its_unit(e2e_dir: Path) -> None:
    total = machine_memory()
    assert total is not None
    celery_kib = str(total // 2**20 + 1)  # as MiB, just more than the machine has
    done = forkq(e2e_dir, "worker", "-A", "e2eapp", "--max-memory-per-child", celery_kib)
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(
        f"forkq: error: Invalid value for '--max-memory-per-child': a bare "
        f"{celery_kib} is MiB here: "
    )
    assert f"Celery's unit is KiB: for its {celery_kib}, write " in line


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("200MB", 200 * 10**6),
        ("1.5GiB", 3 * 2**29),
        ("512MiB", 512 * 2**20),
        ("512 mib", 512 * 2**20),
        ("64", 64 * 2**20),
        ("0.5", 2**19),
        ("2G", 2 * 2**30),
        ("100kB", 100_000),
    ],
)
def test_memory_sizes_take_units_and_a_bare_number_is_mib(text: str, size: int) -> None:
    option = click.Option(["--max-memory-per-child"])
    assert memory_size(click.Context(click.Command("w")), option, text) == size


def test_help_shows_a_percent_sign_once(e2e_dir: Path) -> None:
    shown = forkq(e2e_dir, "worker", "--help").stdout
    assert "10% jitter" in shown and "%%" not in shown


def test_the_banner_shows_what_the_worker_runs_and_ctrl_c_says_what_a_second_does(
    e2e_dir: Path, sqlite_url: str
) -> None:
    worker = WorkerProcess(
        e2e_dir,
        sqlite_url,
        *("-c", "2", "--prefetch", "3", "-Q", "high,low", "-n", "w1@%h"),
        *("--time-limit", "30", "--soft-time-limit", "20", "--max-tasks-per-child", "100"),
        *("--max-memory-per-child", "1.5GiB"),
    )
    try:
        worker.wait_for_log("starting 2 children")
        worker.signal(signal.SIGINT)  # Ctrl-C
        worker.wait_for_log("warm shutdown: waiting up to 60s for running tasks")
        assert worker.wait(timeout=30) == 0
    finally:
        worker.stop()
    assert "(a second Ctrl-C: cold shutdown)" in worker.log()
    lines = [line.split("forkq.worker: ", 1)[-1] for line in worker.log().splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("forkq worker "))
    assert lines[start : start + 6] == [
        f"forkq worker w1@{socket.gethostname()} (master pid {worker.pid}), app e2e",
        f"  broker:      {sqlite_url}",
        f"  results:     {sqlite_url}",
        "  queues:      high, low",
        "  concurrency: 2 children, prefetch 3",
        "  limits:      time limit 30s, soft time limit 20s, tasks per child 100, "
        "memory per child 1536 MiB USS",
    ]
    assert lines[start + 6].startswith("  tasks (") and lines[start + 6].endswith("):")
    assert lines[start + 7 : start + 9] == ["    . e2eapp.add", "    . e2eapp.add_later"]


def test_loglevel_critical_keeps_a_worker_quiet(e2e_dir: Path, sqlite_url: str) -> None:
    worker = WorkerProcess(e2e_dir, sqlite_url, "-c", "1", "-l", "critical")
    try:
        client = Forkq("client", broker=sqlite_url)
        assert client.send_task("e2eapp.add", (1, 1)).get(timeout=30) == 2
        client.close()
        worker.signal(15)
        assert worker.wait(timeout=30) == 0
    finally:
        worker.stop()
    assert worker.log() == ""
