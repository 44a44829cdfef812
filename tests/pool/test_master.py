"""The pool on its own: a Master with a trivial program, no broker anywhere."""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from forkq.pool.child import StopSignal
from forkq.pool.config import PoolConfig
from forkq.pool.exits import ChildExit
from forkq.pool.master import Master
from forkq.pool.scoreboard import SlotView, SlotWriter
from forkq.pool.signals import pidfds_work
from forkq.pool.watch import Verdict

pytestmark = pytest.mark.timeout(60)


class WaitForStop:
    """A child that reports b"c" when it starts, then idles until told to stop."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def run_child(self, index: int, slot: SlotWriter, stop: StopSignal) -> int:
        slot.idle()
        os.write(self.fd, b"c")
        with stop.interruptible():
            while True:
                signal.pause()


class Reporting:
    """Writes what the master tells it to a pipe: b"t" per tick, b"x" per child exit.
    Every tick raises, as a heartbeat on an unreachable broker would."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def tick(self) -> None:
        os.write(self.fd, b"t")
        raise RuntimeError("broker unreachable")

    def child_ending(self, verdict: Verdict, seen: SlotView) -> None:
        pass

    def child_exited(self, exit: ChildExit) -> None:
        os.write(self.fd, b"x")


@contextmanager
def master_process(concurrency: int) -> Iterator[tuple[int, int]]:
    """Run a Master in a forked process; yield (its pid, the read end of its report pipe)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the master's process
        os.close(r)
        config = PoolConfig(concurrency=concurrency, tick_interval=0.05, shutdown_timeout=5)
        os._exit(Master(WaitForStop(w), Reporting(w), config).run())
    os.close(w)
    try:
        yield pid, r
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(r)


def read_reports(fd: int, wanted: bytes, count: int, timeout: float = 20) -> bytes:
    seen = b""
    while seen.count(wanted) < count:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"only {seen!r} within {timeout}s"
        chunk = os.read(fd, 100)
        assert chunk, "the master's pipe closed"
        seen += chunk
    return seen


def children_of(pid: int) -> list[int]:
    return [int(p) for p in open(f"/proc/{pid}/task/{pid}/children").read().split()]


def test_failing_ticks_do_not_stop_the_master_and_term_exits_0() -> None:
    with master_process(concurrency=2) as (pid, reports):
        read_reports(reports, b"t", 3)  # three ticks, each raised: still supervising
        assert len(children_of(pid)) == 2
        os.kill(pid, signal.SIGTERM)
        read_reports(reports, b"x", 2)  # both idle children left on TERM
        assert os.waitpid(pid, 0)[1] == 0


def test_a_killed_child_is_replaced() -> None:
    with master_process(concurrency=2) as (pid, reports):
        seen = read_reports(reports, b"c", 2)
        victim = children_of(pid)[0]
        os.kill(victim, signal.SIGKILL)
        seen += read_reports(reports, b"x", 1)
        read_reports(reports, b"c", 3 - seen.count(b"c"))  # the replacement has started
        survivors = children_of(pid)
        assert victim not in survivors and len(survivors) == 2
        os.kill(pid, signal.SIGQUIT)
        assert os.waitpid(pid, 0)[1] == 0


@pytest.mark.skipif(not pidfds_work(), reason="this kernel has no pidfds")
def test_child_exits_are_watched_through_pidfds() -> None:
    with master_process(concurrency=2) as (pid, reports):
        seen = read_reports(reports, b"c", 2)
        if b"t" not in seen:  # the first tick follows both spawns (and their pidfd_open)
            read_reports(reports, b"t", 1)
        watched = set()
        for info in Path(f"/proc/{pid}/fdinfo").iterdir():
            with contextlib.suppress(FileNotFoundError):
                for line in info.read_text().splitlines():
                    if line.startswith("Pid:"):
                        watched.add(int(line.split()[1]))
        assert watched == set(children_of(pid))
        os.kill(pid, signal.SIGTERM)
        assert os.waitpid(pid, 0)[1] == 0
