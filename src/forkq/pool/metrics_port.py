"""What the master's loop asks of `--metrics-port`, and the same asked of no port at all.

    Master.run      ─► start(pool, selector)   the endpoint joins the loop's selector
    Master._timeout ─► deadline                its connections' deadline is one of the timers
    Master._run_timers ─► expire(now)          connections past it closed
    Master._own_fds ─► fds                     a new child closes them
    Master.reap     ─► child_reaped(exit)      before the slot is forked again
    Master.run ends ─► close()

`PoolMetrics` (pool/metrics.py, with prometheus_client, imported by the worker only when a
port is given) serves it; `Unserved` is the master's without a port: every answer empty.
"""

from __future__ import annotations

import selectors
from collections.abc import Sequence
from typing import Protocol

from forkq.pool.companion import Companions
from forkq.pool.exits import ChildExit
from forkq.pool.scoreboard import Scoreboard


class ServedPool(Protocol):
    """What the metrics read of the master."""

    hostname: str
    concurrency: int
    started_at: float
    stopping: bool
    scoreboard: Scoreboard
    companions: Companions

    def child_slots(self) -> Sequence[tuple[int, int]]:
        """(index, pid) of every live child."""
        ...


class MetricsPort(Protocol):
    """The endpoint as the master's loop drives it."""

    @property
    def fds(self) -> list[int]: ...

    @property
    def deadline(self) -> float | None: ...

    def start(self, pool: ServedPool, selector: selectors.BaseSelector) -> None: ...

    def expire(self, now: float) -> None: ...

    def child_reaped(self, exit: ChildExit, stopping: bool) -> None: ...

    def close(self) -> None: ...


class Unserved:
    """No `--metrics-port`: nothing listens, nothing is counted."""

    @property
    def fds(self) -> list[int]:
        return []

    @property
    def deadline(self) -> float | None:
        return None

    def start(self, pool: ServedPool, selector: selectors.BaseSelector) -> None:
        pass

    def expire(self, now: float) -> None:
        pass

    def child_reaped(self, exit: ChildExit, stopping: bool) -> None:
        pass

    def close(self) -> None:
        pass
