"""What the worker layer hands the pool: how to run it (`PoolConfig`) and what to do in the
master when a child exits and on each tick (`Supervision`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import msgspec

from forkq.pool.control import Handler
from forkq.pool.exits import ChildExit
from forkq.pool.scoreboard import SlotView
from forkq.pool.watch import Verdict


class PoolConfig(msgspec.Struct, frozen=True):
    concurrency: int
    title: str = "forkq"
    shutdown_timeout: float = 60.0  # warm shutdown: how long running tasks may still take
    tick_interval: float = 1.0  # how often Supervision.tick runs
    scan_interval: float = 0.25  # how often the scoreboard is read for time limits
    max_memory_per_child: int | None = None  # bytes of USS; over it, a child is recycled
    reload_check: tuple[str, ...] = ()  # HUP runs it first: exit 0 if the new code loads
    hostname: str = ""  # the worker's name, as inspect shows it
    # The worker layer's commands its control socket answers too (`pool/inspection.handlers`).
    commands: Mapping[str, Handler] = msgspec.field(default_factory=dict)


class Supervision(Protocol):
    """What the worker layer does in the master."""

    def child_ending(self, verdict: Verdict, seen: SlotView) -> None:
        """The master is about to signal a child (`seen`: its slot just before): settle what
        must be settled before anyone else can fetch the task it runs."""
        ...

    def child_exited(self, exit: ChildExit) -> None:
        """A child is gone: make whatever it held available again."""
        ...

    def tick(self) -> None:
        """Runs every `tick_interval` seconds (heartbeats)."""
        ...
