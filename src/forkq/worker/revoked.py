"""The revoked task ids a child holds in memory, so that checking a task costs no round trip.

    master, before the fork: read every revocation once (`revocations(since=0)`), on its tick
           what changed since (`catch_up`: when its bulletin count moved, or MASTER_BACKSTOP)
    child, at boot: the master's set as it was at the fork (`inherited`: shared copy-on-write,
           not copied) ─► refresh: only what changed since the master's cursor
    each task ─► bulletin.revokes() changed, or the backstop due? ─► refresh: only what
                 changed since the cursor (`revocations(since=cursor)`)
             ─► task id in the dict and not expired ─► revoked

So a pool of c children makes one full read when it starts, not c, and a child forked later
(recycled, replaced) reads only what changed since its master's last read.

The master counts the revocations it hears of on the bulletin (`pool/bulletin.py`), one
8-byte load to read; a child whose count is behind reads again before its next task. A worker
that did not hear of a revocation (revoked on another host, or while it was partitioned from
whoever revoked) reads again anyway once `BACKSTOP` seconds have passed since its last read:
a revocation stored at time t is honoured by every child for the tasks it starts after
t + BACKSTOP, heard of or not. The backstop costs a busy child one round trip per BACKSTOP
seconds; an idle child reads nothing.

Never read: a set no read has filled yet (the master's read failed, and so have the child's)
is not known, and `first_read` says so: the child fetches nothing until a read succeeds,
retrying with the outage back-off (worker/consume.py), so it never runs a task revoked before
it could look. Once read, a read that fails (the backend unreachable) leaves the ids as they
were, is logged once per outage, and is tried again at the next task a second later at the
soonest: a child never stops working for it, and the next read catches up from the same cursor.

Expired ids go in expiry order: a heap of (expiry, id) beside the dict, so that dropping them
visits those only. A full scan would write every entry's reference count and, in a child,
make every page of the inherited set its own copy.

A backend that lost its sequence is read again from 0, the ids held replaced once that read
succeeds: one that answers a cursor below the reader's (a flushed server), or another epoch
(a Redis server restarted without its data, whose new sequence may already have passed the
reader's cursor: `Revocations.epoch`).
"""

from __future__ import annotations

import heapq
import itertools
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
MASTER_BACKSTOP = 60.0  # the master's: its set only spares the children it forks a read
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
        self._bulletin = bulletin
        # The master's count of revocations heard of: a bound method, called before each task.
        self._heard_now: Callable[[], int] = (
            _nothing_heard if bulletin is None else bulletin.revokes
        )
        self._backstop = backstop
        self._ids: dict[str, float] = {}  # task id -> its revocation's expiry, oldest first
        self._cursor = 0
        self._epoch = ""
        self.known = False  # whether a read ever succeeded
        self._pause = 0.0  # the outage's back-off after the last failed read
        self._heard = -1  # the bulletin's count when last read (-1: never read)
        self._due = 0.0  # monotonic: when the backstop reads again
        # (expiry, task id), soonest first; an entry whose id was revoked again or dropped
        # is stale, and skipped when it comes out.
        self._expiries: list[tuple[float, str]] = []
        self._outage = Outage("result backend (revoked ids)", log)

    def __len__(self) -> int:
        return len(self._ids)

    def inherited(self, results: ResultBackend, backstop: float = BACKSTOP) -> RevokedIds:
        """A forked child's: this set (its master's) as it was at the fork, the dict shared
        copy-on-write rather than copied, read from now on with `results` (the child's own
        connection) from the same cursor; its first check reads what changed since."""
        child = RevokedIds(results, self._bulletin, backstop)
        child._ids, child._cursor, child._epoch = self._ids, self._cursor, self._epoch
        child.known, child._expiries = self.known, self._expiries
        return child

    def revoked(self, task_id: str) -> bool:
        """Whether `task_id` is revoked: read again first if the bulletin or the backstop says
        the set may have changed."""
        heard = self._heard_now()
        if heard != self._heard or monotonic() >= self._due:
            self.refresh(heard)
        expires = self._ids.get(task_id)
        return expires is not None and expires >= time.time()

    def catch_up(self) -> None:
        """Read what changed if the bulletin or the backstop says it may have (the master's
        tick: what the children it forks next inherit)."""
        heard = self._heard_now()
        if heard != self._heard or monotonic() >= self._due:
            self.refresh(heard)

    def first_read(self) -> float:
        """0 once the ids have been read; until then one more attempt, and if it fails how
        long to wait before the next (the outage's back-off)."""
        if not self.known:
            self.refresh()
        return 0.0 if self.known else self._pause

    def refresh(self, heard: int | None = None) -> None:
        """Read what changed since the cursor (everything, the first time)."""
        if heard is None:
            heard = self._heard_now()
        now = monotonic()
        self._heard = heard  # taken before the read: a revoke posted during it reads again
        try:
            found = self._results.revocations(self._cursor)
            if self._cursor and (found.cursor < self._cursor or found.epoch != self._epoch):
                found = self._results.revocations(0)  # the backend lost its sequence
                self._ids, self._expiries = {}, []
        except BackendError as exc:
            self._pause = self._outage.failed(exc)
            self._due = now + max(RETRY_AFTER, min(self._pause, self._backstop))
            return
        self._outage.succeeded()
        self._due = now + self._backstop
        self.known = True
        self._take(found)

    def _take(self, found: Revocations) -> None:
        ids, expiries = self._ids, self._expiries
        for revocation in found.revoked:
            ids.pop(revocation.task_id, None)  # to the end: revoked again, newest
            ids[revocation.task_id] = revocation.expires_at
            heapq.heappush(expiries, (revocation.expires_at, revocation.task_id))
        self._cursor, self._epoch = found.cursor, found.epoch
        self._drop_expired(time.time())
        if len(ids) > REVOKED_MAX:  # the backend keeps no more: the oldest go here too
            # Only the first few keys are visited: in a child, the inherited set's other
            # entries stay untouched, their pages shared with the master.
            for task_id in list(itertools.islice(ids, len(ids) - REVOKED_MAX)):
                del ids[task_id]
        if len(expiries) > 2 * len(ids) + 1_000:  # mostly stale: made again, once in a while
            self._expiries = [(expires, task_id) for task_id, expires in ids.items()]
            heapq.heapify(self._expiries)

    def _drop_expired(self, now: float) -> None:
        """The ids expired by `now`, taken from the heap's front: nothing else is visited."""
        ids, expiries = self._ids, self._expiries
        while expiries and expiries[0][0] < now:
            expires, task_id = heapq.heappop(expiries)
            if ids.get(task_id) == expires:
                del ids[task_id]
