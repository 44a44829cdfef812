"""Riding out a broker or backend outage: back off, and say so once, not once per attempt."""

from __future__ import annotations

import logging
import time

MAX_BACKOFF = 5.0


class Outage:
    def __init__(self, what: str, log: logging.Logger) -> None:
        self.what = what
        self.log = log
        self.since: float | None = None
        self.attempts = 0

    def failed(self, error: Exception) -> float:
        """Record a failed attempt; returns how long to wait before the next one."""
        if self.since is None:
            self.since = time.monotonic()
            self.log.warning("%s unreachable (%s); retrying with back-off", self.what, error)
        self.attempts += 1
        return float(min(MAX_BACKOFF, 0.05 * 2.0**self.attempts))

    def succeeded(self) -> None:
        if self.since is not None:
            self.log.warning(
                "%s reachable again after %.1fs", self.what, time.monotonic() - self.since
            )
            self.since, self.attempts = None, 0
