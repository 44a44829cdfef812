"""How far apart the master's heartbeats land, against the lease they keep.

On an engine that takes back a silent worker's messages (`Capabilities.releases_others`:
Redis, SQLite), the worker's key lives lease_ttl from each beat; the master beats every third
of it, on its tick, after which the tick reads more (the revoked ids, the queues' depths),
each a round trip. On a link whose round trips approach a third of lease_ttl (measured: a
1 s lease_ttl through 500 ms each way), beats land further apart than lease_ttl although every
one arrives: between them the key is gone, and another worker's recovery takes this worker's
messages for a dead worker's and runs them again. Nothing tells that apart from a dead worker
on the server's side, so the master says so: a warning when two beats land more than half of
lease_ttl apart (at most once a minute), naming the fix (a longer lease_ttl).
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("forkq.worker")

WARN_EVERY = 60.0  # seconds between two warnings


class BeatGaps:
    def __init__(self, lease_ttl: float, leases: bool) -> None:
        self.lease_ttl = lease_ttl
        self.leases = leases  # whether the engine takes back what a silent worker holds
        self._last: float | None = None  # monotonic time of the last beat that landed
        self._warned_at = -WARN_EVERY

    def landed(self) -> None:
        """A beat was answered now."""
        now = time.monotonic()
        last, self._last = self._last, now
        if last is None or not self.leases or now - last <= self.lease_ttl / 2:
            return
        if now - self._warned_at < WARN_EVERY:
            return
        self._warned_at = now
        log.warning(
            "heartbeats %.1f s apart, lease_ttl %g s: the link to the broker is too slow (or "
            "the master too busy) for this lease; another worker may take this worker's "
            "messages for a dead worker's and run them again. Raise lease_ttl in the broker "
            "URL (?lease_ttl=SECONDS) to several times the broker's round trip",
            now - last,
            self.lease_ttl,
        )
