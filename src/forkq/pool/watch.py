"""The master's watch over its children: read the scoreboard and /proc, return verdicts.

    every scan (0.25 s): busy slot past its deadline ─► Verdict(SIGKILL, TIME_LIMIT)
    each child's memory check: USS over the limit   ─► Verdict(SIGTERM, MEMORY)

A verdict is carried out by the master; the reason travels with the child's exit so the
worker layer can tell a task killed for its time limit (FAILURE) from a crash (redelivery).
Memory is measured as USS, the child's private pages: RSS would count the pages it still
shares with the master, and recycling a child frees only its private ones. Reading a child's
USS walks its page tables (milliseconds for a child of a master of a few hundred MB), so each
child is read every `memory_interval` seconds, or sooner when it grows: by its growth since
the last reading, the next comes when it would be halfway from there to the limit, but not
more often than every scan (a new child is read at two scans in a row, for a first rate). A
child that reads a large preloaded structure copies it page by page (reference counts are
writes) and can grow by 100 MiB a second: read at a fixed period of 2 s, it could pass its
limit by 200 MiB before it is recycled.
"""

from __future__ import annotations

import enum
import logging
import signal
import time
from collections.abc import Iterable

import msgspec

from forkq.pool.process_memory import read_process_memory
from forkq.pool.scoreboard import Scoreboard, SlotState


class Ending(enum.Enum):
    """Why the master ends a child."""

    TIME_LIMIT = "time limit"  # its task ran past its hard time limit
    MEMORY = "memory"  # its USS grew past the limit: it is recycled
    SHRINK = "shrink"  # TTOU: an idle child retired
    REVOKED = "revoked"  # its task was revoked with terminate (pool/revoke.py)


class Verdict(msgspec.Struct, frozen=True):
    pid: int
    signum: int
    reason: Ending
    task_id: str = ""  # the task it concerns, for a time limit or a revocation
    detail: str = ""

    def announcement(self, index: int) -> tuple[int, str]:
        """The log level and line of carrying it out on child `index`."""
        child = f"child {index} (pid {self.pid})"
        if self.reason is Ending.SHRINK:
            return logging.INFO, f"retiring idle {child}"
        if self.reason is Ending.TIME_LIMIT:
            return (
                logging.WARNING,
                f"{child} ran {self.detail} past its hard time limit: killing it",
            )
        if self.reason is Ending.REVOKED:
            sent = signal.Signals(self.signum).name
            return logging.WARNING, f"{child} runs revoked task {self.detail}: sending {sent}"
        return logging.INFO, f"recycling {child}: {self.detail}"

    def after(self, held: Verdict | None) -> Verdict:
        """The verdict a child's exit is judged by once this one is carried out while `held`
        stands: a revocation outlasts any later verdict on the same task (its hard time limit,
        the memory limit), since the task was revoked and its record is REVOKED; otherwise
        this newest one."""
        if (
            held is not None
            and held.reason is Ending.REVOKED
            and self.task_id in ("", held.task_id)
        ):
            return held
        return self


class _Reading(msgspec.Struct, frozen=True):
    uss: int
    at: float
    next_at: float


class Watch:
    def __init__(self, max_memory: int | None = None, memory_interval: float = 2.0) -> None:
        self.max_memory = max_memory  # bytes of USS
        self.memory_interval = memory_interval
        self._readings: dict[int, _Reading] = {}  # pid -> its last memory reading

    def check(self, children: Iterable[tuple[int, int]], board: Scoreboard) -> list[Verdict]:
        """Verdicts for (index, pid) children; the caller skips pids it already judged."""
        now = time.monotonic()
        children = list(children)
        alive = {pid for _, pid in children}
        self._readings = {p: r for p, r in self._readings.items() if p in alive}
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
                        Ending.TIME_LIMIT,
                        seen.task_id,
                        f"{seen.task_name}[{seen.task_id}]",
                    )
                )
            elif self._memory_due(pid, now) and seen.state in (SlotState.IDLE, SlotState.BUSY):
                verdict = self._memory_verdict(pid, now)
                if verdict is not None:
                    verdicts.append(verdict)
        return verdicts

    def _memory_due(self, pid: int, now: float) -> bool:
        reading = self._readings.get(pid)
        return self.max_memory is not None and (reading is None or now >= reading.next_at)

    def _memory_verdict(self, pid: int, now: float) -> Verdict | None:
        assert self.max_memory is not None
        usage = read_process_memory(pid)
        if usage is None:
            return None
        last = self._readings.get(pid)
        self._readings[pid] = _Reading(usage.uss, now, now + self._wait(usage.uss, last, now))
        if usage.uss <= self.max_memory:
            return None
        detail = f"USS {usage.uss / 2**20:.1f} MiB > {self.max_memory / 2**20:.1f} MiB"
        # TERM: the child finishes its current task, then leaves; a fresh fork replaces it.
        return Verdict(pid, signal.SIGTERM, Ending.MEMORY, detail=detail)

    def _wait(self, uss: int, last: _Reading | None, now: float) -> float:
        """Seconds until this child's next memory reading."""
        assert self.max_memory is not None
        if last is None:
            return 0.0  # a second reading at the next scan gives a rate
        if uss <= last.uss or now <= last.at:
            return self.memory_interval
        rate = (uss - last.uss) / (now - last.at)  # bytes a second
        halfway = (self.max_memory - uss) / rate / 2
        return min(self.memory_interval, max(0.0, halfway))
