"""The master's watch over its children: read the scoreboard and /proc, return verdicts.

    every scan (0.25 s): busy slot past its deadline ─► Verdict(SIGKILL, "time limit")
    every memory scan:   child USS over the limit   ─► Verdict(SIGTERM, "memory")

A verdict is carried out by the master; the reason travels with the child's exit so the
worker layer can tell a task killed for its time limit (FAILURE) from a crash (redelivery).
Memory is measured as USS, the child's private pages: RSS would count the pages it still
shares with the master, and recycling a child frees only its private ones.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass

from forkq.memory import read_process_memory
from forkq.pool.scoreboard import Scoreboard, SlotState

TIME_LIMIT = "time limit"
MEMORY = "memory"
SHRINK = "shrink"  # TTOU: an idle child retired


@dataclass(frozen=True)
class Verdict:
    pid: int
    signum: int
    reason: str
    task_id: str = ""  # the task it concerns, for a time limit
    detail: str = ""


class Watch:
    def __init__(self, max_memory: int | None = None, memory_interval: float = 2.0) -> None:
        self.max_memory = max_memory  # bytes of USS
        self.memory_interval = memory_interval
        self._next_memory_check = 0.0

    def check(self, children: Iterable[tuple[int, int]], board: Scoreboard) -> list[Verdict]:
        """Verdicts for (index, pid) children; the caller skips pids it already judged."""
        now = time.monotonic()
        check_memory = self.max_memory is not None and now >= self._next_memory_check
        if check_memory:
            self._next_memory_check = now + self.memory_interval
        verdicts = []
        for index, pid in children:
            seen = board.read(index)
            if seen.pid != pid:
                continue  # not booted far enough to have written its slot
            if seen.state == SlotState.BUSY and seen.deadline and now >= seen.deadline:
                verdicts.append(
                    Verdict(
                        pid,
                        signal.SIGKILL,
                        TIME_LIMIT,
                        seen.task_id,
                        f"{seen.task_name}[{seen.task_id}]",
                    )
                )
            elif check_memory and seen.state in (SlotState.IDLE, SlotState.BUSY):
                verdict = self._memory_verdict(pid)
                if verdict is not None:
                    verdicts.append(verdict)
        return verdicts

    def _memory_verdict(self, pid: int) -> Verdict | None:
        assert self.max_memory is not None
        usage = read_process_memory(pid)
        if usage is None or usage.uss <= self.max_memory:
            return None
        detail = f"USS {usage.uss / 2**20:.1f} MiB > {self.max_memory / 2**20:.1f} MiB"
        # TERM: the child finishes its current task, then leaves; a fresh fork replaces it.
        return Verdict(pid, signal.SIGTERM, MEMORY, detail=detail)
