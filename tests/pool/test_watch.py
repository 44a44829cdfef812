"""The master's watch: memory readings come sooner for a child that grows towards its limit."""

from __future__ import annotations

import signal

import pytest

from forkq.pool import watch as watch_module
from forkq.pool.process_memory import ProcessMemory
from forkq.pool.scoreboard import Scoreboard
from forkq.pool.watch import Ending, Verdict, Watch

MIB = 2**20


def test_a_growing_child_is_read_sooner_and_recycled_near_its_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    uss = [10 * MIB]
    reads: list[float] = []

    def read(pid: int, role: str = "") -> ProcessMemory:
        reads.append(clock[0])
        return ProcessMemory(pid=pid, role=role, rss=0, pss=0, uss=uss[0], shared=0)

    monkeypatch.setattr(watch_module, "read_process_memory", read)
    monkeypatch.setattr(watch_module.time, "monotonic", lambda: clock[0])
    board = Scoreboard(1)
    slot = board.writer(0)
    slot.start(4242)
    slot.idle()
    watch = Watch(max_memory=75 * MIB, memory_interval=2.0)

    def scan(seconds: float, grow_mib: float) -> list[str]:
        clock[0] += seconds
        uss[0] += int(grow_mib * MIB)
        return [v.reason for v in watch.check([(0, 4242)], board)]

    assert scan(0.25, 0) == [] and len(reads) == 1  # first reading
    assert scan(0.25, 0) == [] and len(reads) == 2  # at once a second one, for a rate
    assert scan(0.25, 0) == [] and len(reads) == 2  # not growing: the next in 2 s
    for _ in range(7):
        scan(0.25, 0)
    assert len(reads) == 3

    # A new child that reads a big structure at 40 MiB a second, as a fresh one does.
    watch._readings.clear()
    reads.clear()
    uss[0] = 10 * MIB
    verdicts: list[str] = []
    while not verdicts:
        verdicts = scan(0.25, 10)
    assert verdicts == [Ending.MEMORY]
    assert uss[0] <= 85 * MIB  # past 75 MiB by at most one scan's growth, not by 2 s of it
    assert len(reads) >= 4  # read more often than every 2 s as it neared the limit


def test_a_revocation_outlasts_a_later_verdict_on_the_same_task() -> None:
    revoked = Verdict(7, signal.SIGTERM, Ending.REVOKED, "t-1")
    timed_out = Verdict(7, signal.SIGKILL, Ending.TIME_LIMIT, "t-1")
    memory = Verdict(7, signal.SIGTERM, Ending.MEMORY)
    assert timed_out.after(revoked) is revoked and memory.after(revoked) is revoked
    assert timed_out.after(None) is timed_out  # no revocation: the newest verdict
    other = Verdict(7, signal.SIGKILL, Ending.TIME_LIMIT, "t-2")  # the child moved on
    assert other.after(revoked) is other and revoked.after(timed_out) is revoked
