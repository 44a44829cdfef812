"""The fetch loop of the engines that recover by lease (SQLite, Redis), written once.

┌─► recovery due? take back the holds of dead workers (every lease_ttl / 4)
│   claim: hold up to `limit` visible messages ──► some: return them
│   deadline passed ──► return []
└── wait until something may have changed (a publish, the next delayed message, the next
    recovery), at most until the deadline ──► messages the wait itself delivered: return
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec

from forkq.engines.contract.values import Delivery


class Claimed(msgspec.Struct):
    """What one look at the queues found."""

    got: list[Delivery]
    next_due: float | None = None  # time.time() when the next delayed message is due
    again: bool = False  # look again at once (what came was malformed and dead-lettered)


class RecoveryClock:
    """When a consumer next looks for holds whose lease ran out: every lease_ttl / 4, at its
    fetches, so that a dead worker's messages come back within about 1.25 lease_ttl."""

    def __init__(self, lease_ttl: float) -> None:
        self.period = lease_ttl / 4
        self.next_at = 0.0  # time.time() of the next look

    def due(self) -> bool:
        """Whether a look is due now; if so, the next one is a period away."""
        now = time.time()
        if now < self.next_at:
            return False
        self.next_at = now + self.period
        return True

    def wake_at(self, next_due: float | None) -> float:
        """When a waiting fetch must look again: the next due message or the next recovery."""
        return self.next_at if next_due is None else min(next_due, self.next_at)


def fetch_until(
    timeout: float,
    clock: RecoveryClock,
    recover: Callable[[], None],
    claim: Callable[[], Claimed],
    wait: Callable[[float], list[Delivery]],
) -> list[Delivery]:
    """Claim, else wait (blocking, never spinning) and claim again, until `timeout` seconds
    have passed. `wait(seconds)` returns what it delivered itself, if anything."""
    deadline = time.monotonic() + timeout
    while True:
        if clock.due():
            recover()
        claimed = claim()
        if claimed.got:
            return claimed.got
        if claimed.again:
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return []
        pause = min(remaining, max(0.001, clock.wake_at(claimed.next_due) - time.time()))
        got = wait(pause)
        if got:
            return got
