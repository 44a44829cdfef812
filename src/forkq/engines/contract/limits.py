"""Rate and concurrency limits as a result backend keeps them: the rules every engine follows.

A rate limit is a schedule of start slots, one every `interval` seconds, per bucket (a task, or
a task and a key), kept as GCRA keeps it: TAT, the next free slot, and LAST, the latest start.

    take(holder) ─► holder has a reservation r?
                      ├─ r > now + tolerance: wait r - now, r kept          (back early)
                      └─ now + tolerance ≥ LAST + interval: go, LAST = now, r consumed
                    otherwise (no reservation, or one due too soon after another start):
                      slot = max(TAT, now, LAST + interval); TAT = slot + interval
                      ├─ slot ≤ now + tolerance: go, LAST = now
                      └─ else: r = slot for `holder`, kept `keep` seconds past it; wait

So a backlog of N takes gets N distinct slots (no stampede when their waits end), a holder that
comes back takes the slot it was given, and two starts are never closer than the interval (less
the tolerance), even when reservations come back late together because their workers fell
behind: the first goes, the others get new slots, an interval apart. A reservation whose holder
never comes back wastes its slot and expires.

A concurrency limit is a set of held slots per bucket, one per holder (a task id), each with a
lease: taking is re-entrant (a redelivered task takes its own slot again, renewing the lease);
when all are held, the answer is a back-off kept per holder, doubling from `Backoff.first` to
`Backoff.most`, spread by jitter, and forgotten `Backoff.kept` seconds after its last use.

`decide_rate` is the rule itself, which the memory and SQLite backends run as it is and Redis's
rate.lua mirrors; the conformance tests hold all three to it.
"""

from __future__ import annotations

import math

import msgspec

RATE_TOLERANCE = 0.01  # seconds: a reservation this early is due; two starts this much closer
RESERVATION_KEPT = 60.0  # seconds a reservation is kept after its slot, for its holder
NEVER = -math.inf  # LAST of a bucket that never started anything


class RateState(msgspec.Struct):
    """A bucket's schedule: the next free slot, and the latest start (Unix times)."""

    tat: float = 0.0
    last: float = NEVER


class RateTaken(msgspec.Struct, frozen=True):
    """What one take decided: the wait (0: go now), and the holder's reservation afterwards
    (None: it has none, consumed or never made)."""

    wait: float
    reservation: float | None


def decide_rate(
    state: RateState, reservation: float | None, now: float, interval: float
) -> RateTaken:
    """One take by a holder whose reservation is `reservation` (None: none, or expired);
    `state` is updated in place."""
    if reservation is not None:
        if reservation > now + RATE_TOLERANCE:
            return RateTaken(reservation - now, reservation)
        if now + RATE_TOLERANCE >= state.last + interval:
            state.last = now
            return RateTaken(0.0, None)
    slot = max(state.tat, now, state.last + interval)
    state.tat = slot + interval
    if slot <= now + RATE_TOLERANCE:
        state.last = now
        return RateTaken(0.0, None)
    return RateTaken(slot - now, slot)


def idle_after(state: RateState, interval: float) -> float:
    """When the bucket is as good as new (nothing scheduled, nothing started within the
    interval): its stored state may expire then."""
    return max(state.tat, state.last + interval)


class Backoff(msgspec.Struct, frozen=True):
    """How a take that finds every concurrency slot held is told to wait: `first` seconds, then
    twice the previous each time, up to `most`, each spread over [half, all] of it by jitter;
    a holder's back-off is forgotten `kept` seconds after its latest use (or when it takes)."""

    first: float = 0.1
    most: float = 10.0
    kept: float = 60.0

    def __post_init__(self) -> None:
        if not (0 < self.first <= self.most < math.inf and 0 < self.kept < math.inf):
            raise ValueError(f"a back-off needs 0 < first <= most and kept > 0: {self!r}")

    def next_base(self, previous: float | None) -> float:
        """The un-jittered back-off after `previous` (None: the holder has none yet; one out
        of [first, most], which only junk can be, counts as none: never a wait of 0, which
        would mean a slot taken)."""
        if previous is None or not self.first <= previous <= self.most:
            return self.first
        return min(self.most, previous * 2)

    @staticmethod
    def jittered(base: float, jitter: float) -> float:
        """`base` spread by `jitter` in [0, 1): from half of it to all of it."""
        return base * (0.5 + 0.5 * jitter)


BACKOFF = Backoff()


def check_interval(interval: float) -> None:
    """A rate's interval, as a backend takes it: a positive, finite number of seconds."""
    if not (isinstance(interval, (int, float)) and 0 < interval < math.inf):
        raise ValueError(f"a rate's interval must be a number of seconds > 0, not {interval!r}")
