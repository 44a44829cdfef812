"""Riding out a broker or backend failure: back off, and say so once, not once per attempt.

Only an `Unavailable` error (a connection problem) is called an outage ("unreachable"); any
other failure (a script error, a wrong type) is logged as an error naming what failed. Both
back off the same way, so a failure that repeats never spins; a change of kind is logged again.
"""

from __future__ import annotations

import logging
import time

from forkq.exceptions import Unavailable

MAX_BACKOFF = 5.0


class Outage:
    def __init__(self, what: str, log: logging.Logger) -> None:
        self.what = what
        self.log = log
        self.since: float | None = None
        self.unreachable = False  # the kind of the failure logged last
        self.attempts = 0

    def failed(self, error: Exception) -> float:
        """Record a failed attempt; returns how long to wait before the next one."""
        unreachable = isinstance(error, Unavailable)
        if self.since is None or unreachable != self.unreachable:
            self.since = self.since if self.since is not None else time.monotonic()
            self.unreachable = unreachable
            if unreachable:
                self.log.warning("%s unreachable (%s); retrying with back-off", self.what, error)
            else:
                self.log.error("%s failed: %s; retrying with back-off", self.what, error)
        self.attempts += 1
        return float(min(MAX_BACKOFF, 0.05 * 2.0**self.attempts))

    def succeeded(self) -> None:
        if self.since is not None:
            state = "reachable again" if self.unreachable else "working again"
            self.log.warning("%s %s after %.1fs", self.what, state, time.monotonic() - self.since)
            self.since, self.attempts = None, 0
