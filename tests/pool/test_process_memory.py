"""Memory figures from /proc, measured on real forked processes."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from rich.console import Console

from forkq.pool.process_memory import (
    ProcessMemory,
    child_pids,
    format_bytes,
    memory_json,
    process_tree_memory,
    read_process_memory,
    totals,
)
from forkq.process_memory_report import memory_summary, memory_table

MB = 1024 * 1024


def test_own_process_figures_are_consistent() -> None:
    me = read_process_memory(os.getpid(), "me")
    assert me is not None and me.role == "me"
    assert me.rss >= me.pss >= me.uss > 0
    assert abs(me.rss - (me.uss + me.shared)) < 2 * MB


def test_a_vanished_process_reads_as_none() -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os._exit(0)
    os.waitpid(pid, 0)
    assert read_process_memory(pid) is None


@contextmanager
def forked_child_holding(buffer: bytearray) -> Iterator[tuple[int, int, int]]:
    """A child that blocks; writing b"w" makes it dirty `buffer` and answer on `done`."""
    go_r, go_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        while os.read(go_r, 1) == b"w":
            for i in range(0, len(buffer), 4096):
                buffer[i] = 1
            os.write(done_w, b"d")
        os._exit(0)
    try:
        yield pid, go_w, done_r
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        for fd in (go_r, go_w, done_r, done_w):
            os.close(fd)


@pytest.mark.timeout(30)
def test_fork_shares_until_the_child_writes() -> None:
    buffer = bytearray(os.urandom(64 * MB))  # resident in the parent before the fork
    with forked_child_holding(buffer) as (pid, go, done):
        shared = read_process_memory(pid)
        assert shared is not None
        assert shared.uss < 24 * MB  # the 64 MiB are the parent's pages, not the child's
        assert shared.rss - shared.uss > 48 * MB
        assert pid in child_pids(os.getpid())
        os.write(go, b"w")
        assert os.read(done, 1) == b"d"
        written = read_process_memory(pid)
        assert written is not None and written.uss > 60 * MB  # copy-on-write made them its own


def test_process_tree_lists_master_then_children() -> None:
    with forked_child_holding(bytearray(16)) as (pid, _, _):
        rows = process_tree_memory(os.getpid())
    assert rows[0].role == "master" and rows[0].pid == os.getpid()
    assert pid in [r.pid for r in rows[1:]] and all(r.role == "child" for r in rows[1:])


def test_totals_report_and_json() -> None:
    rows = [
        ProcessMemory(1, "master", rss=100 * MB, pss=40 * MB, uss=10 * MB, shared=90 * MB),
        ProcessMemory(2, "child", rss=100 * MB, pss=40 * MB, uss=5 * MB, shared=95 * MB),
    ]
    total = totals(rows)
    assert (total.rss, total.pss, total.cow_saving) == (200 * MB, 80 * MB, 120 * MB)
    out = io.StringIO()
    Console(file=out, width=120).print(memory_table(rows))
    assert "200.0 MiB" in out.getvalue() and "15.0 MiB" in out.getvalue()
    summary = memory_summary(rows)
    assert "Sum of RSS (naive accounting): 200.0 MiB" in summary
    assert "fork shared 120.0 MiB (60% of RSS)" in summary
    assert memory_json(rows)["totals"]["cow_saving"] == 120 * MB
    assert format_bytes(512) == "0.5 KiB" and format_bytes(3 * MB) == "3.0 MiB"
