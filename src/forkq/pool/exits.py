"""A child's exit, and what it means for the next fork.

exit while STARTING (or code 3) ─► boot failure  ─► back off; five in a row: give up
crash while IDLE, < 1 s old     ─► quick crash   ─► back off, never give up
crash while BUSY                ─► the task's business (redelivery limit): respawn now
clean exit (recycled, retired)  ─► respawn now, reset the back-off

Its cause, as metrics count it (`ChildExit.cause`): the master's reason when it ended the
child (an `Ending`: time_limit, memory, shrink), else shutdown while the pool stops,
boot_failed, max_tasks (a clean exit of its own: its --max-tasks-per-child budget was spent),
crashed (killed by a signal nobody sent it, or an exit code other than 0).
"""

from __future__ import annotations

import os
import signal
import time

import msgspec

from forkq.pool.child import EXIT_BOOT_FAILED
from forkq.pool.scoreboard import SlotState, SlotView
from forkq.pool.watch import Ending

BOOT_FAILURES_BEFORE_GIVING_UP = 5
HEALTHY_LIFETIME = 1.0  # seconds; an idle child dying sooner makes the master back off
MAX_RESPAWN_DELAY = 10.0
SHUTDOWN, BOOT_FAILED, MAX_TASKS, CRASHED = "shutdown", "boot_failed", "max_tasks", "crashed"


def exit_causes() -> list[str]:
    """Every cause `ChildExit.cause` gives."""
    return [e.name.lower() for e in Ending] + [SHUTDOWN, BOOT_FAILED, MAX_TASKS, CRASHED]


class ChildExit(msgspec.Struct, frozen=True):
    index: int
    pid: int
    status: int  # as returned by waitpid
    last_seen: SlotView  # the child's slot just before it went away
    reason: Ending | None = None  # why the master ended it, if it did

    @property
    def clean(self) -> bool:
        return os.WIFEXITED(self.status) and os.WEXITSTATUS(self.status) == 0

    @property
    def description(self) -> str:
        if os.WIFSIGNALED(self.status):
            return f"killed by {signal.Signals(os.WTERMSIG(self.status)).name}"
        return f"exit code {os.waitstatus_to_exitcode(self.status)}"

    def cause(self, stopping: bool) -> str:
        """Why the child left, as a metric's label (`exit_causes`)."""
        if self.reason is not None:
            return self.reason.name.lower()
        if stopping:
            return SHUTDOWN
        if self.boot_failed:
            return BOOT_FAILED
        return MAX_TASKS if self.clean else CRASHED

    @property
    def boot_failed(self) -> bool:
        exited_3 = os.WIFEXITED(self.status) and os.WEXITSTATUS(self.status) == EXIT_BOOT_FAILED
        return exited_3 or (not self.clean and self.last_seen.state == SlotState.STARTING)


class RespawnPolicy:
    """When the next child may be forked."""

    def __init__(self) -> None:
        self.boot_failures = 0  # children in a row that failed before taking work
        self.quick_crashes = 0  # children in a row that died idle, soon after starting
        self.not_before = 0.0  # monotonic

    @property
    def gave_up(self) -> bool:
        return self.boot_failures >= BOOT_FAILURES_BEFORE_GIVING_UP

    def child_exited(self, exit: ChildExit, lifetime: float) -> str | None:
        """Returns why the next fork is delayed, or None when it may happen now."""
        if exit.boot_failed:
            self.boot_failures += 1
            return self._delay("failed while booting")
        if (
            not exit.clean
            and exit.last_seen.state != SlotState.BUSY
            and lifetime < HEALTHY_LIFETIME
        ):
            self.quick_crashes += 1
            return self._delay("crashed soon after starting")
        self.boot_failures = self.quick_crashes = 0
        return None

    def fork_failed(self) -> str:
        self.quick_crashes += 1
        return self._delay("could not be forked")

    def _delay(self, why: str) -> str:
        delay = min(MAX_RESPAWN_DELAY, 0.1 * 2 ** (self.boot_failures + self.quick_crashes))
        self.not_before = time.monotonic() + delay
        return f"child {why}; next spawn in {delay:.1f}s"
