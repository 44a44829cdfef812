"""The revoked task ids a child holds in memory, so that checking a task costs no round trip.

    boot ─► refresh: every revocation in the result backend (`revocations(since=0)`)
    each task ─► bulletin.revokes() changed, or the backstop due? ─► refresh: only what
                 changed since the cursor (`revocations(since=cursor)`)
             ─► task id in the dict and not expired ─► revoked

The master counts the revocations it hears of on the bulletin (`pool/bulletin.py`), one
8-byte load to read; a child whose count is behind reads again before its next task. A worker
that did not hear of a revocation (revoked on another host, or while it was partitioned from
whoever revoked) reads again anyway once `BACKSTOP` seconds have passed since its last read:
a revocation stored at time t is honoured by every child for the tasks it starts after
t + BACKSTOP, heard of or not. The backstop costs a busy child one round trip per BACKSTOP
seconds; an idle child reads nothing.

A read that fails (the backend unreachable) leaves the ids as they were, is logged once per
outage, and is tried again at the next task a second later at the soonest: a child never
stops working for it, and the next read catches up from the same cursor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from time import monotonic

from forkq.engines.contract import REVOKED_MAX, ResultBackend, Revocations
from forkq.exceptions import BackendError
from forkq.outage import Outage
from forkq.pool.bulletin import BulletinReader

log = logging.getLogger("forkq.worker")

BACKSTOP = 5.0  # seconds between reads when no revocation was heard of
RETRY_AFTER = 1.0  # seconds after a failed read before the next


def _nothing_heard() -> int:
    return 0


class RevokedIds:
    def __init__(
        self,
        results: ResultBackend,
        bulletin: BulletinReader | None = None,
        backstop: float = BACKSTOP,
    ) -> None:
        self._results = results
        # The master's count of revocations heard of: a bound method, called before each task.
        self._heard_now: Callable[[], int] = (
            _nothing_heard if bulletin is None else bulletin.revokes
        )
        self._backstop = backstop
        self._ids: dict[str, float] = {}  # task id -> its revocation's expiry, oldest first
        self._cursor = 0
        self._heard = -1  # the bulletin's count when last read (-1: never read)
        self._due = 0.0  # monotonic: when the backstop reads again
        self._soonest_expiry = float("inf")  # Unix time: when to drop expired ids
        self._outage = Outage("result backend (revoked ids)", log)

    def __len__(self) -> int:
        return len(self._ids)

    def revoked(self, task_id: str) -> bool:
        """Whether `task_id` is revoked: read again first if the bulletin or the backstop says
        the set may have changed."""
        heard = self._heard_now()
        if heard != self._heard or monotonic() >= self._due:
            self.refresh(heard)
        expires = self._ids.get(task_id)
        return expires is not None and expires >= time.time()

    def refresh(self, heard: int | None = None) -> None:
        """Read what changed since the cursor (everything, the first time)."""
        if heard is None:
            heard = self._heard_now()
        now = monotonic()
        self._heard = heard  # taken before the read: a revoke posted during it reads again
        try:
            found = self._results.revocations(self._cursor)
            if found.cursor < self._cursor:  # the backend lost its sequence: start again
                self._ids.clear()
                found = self._results.revocations(0)
        except BackendError as exc:
            pause = self._outage.failed(exc)
            self._due = now + max(RETRY_AFTER, min(pause, self._backstop))
            return
        self._outage.succeeded()
        self._due = now + self._backstop
        self._take(found)

    def _take(self, found: Revocations) -> None:
        ids = self._ids
        for revocation in found.revoked:
            ids.pop(revocation.task_id, None)  # to the end: revoked again, newest
            ids[revocation.task_id] = revocation.expires_at
            self._soonest_expiry = min(self._soonest_expiry, revocation.expires_at)
        self._cursor = found.cursor
        now = time.time()
        if now >= self._soonest_expiry:
            for task_id in [t for t, expires in ids.items() if expires < now]:
                del ids[task_id]
            self._soonest_expiry = min(ids.values(), default=float("inf"))
        if len(ids) > REVOKED_MAX:  # the backend keeps no more: the oldest go here too
            for task_id in list(ids)[: len(ids) - REVOKED_MAX]:
                del ids[task_id]
