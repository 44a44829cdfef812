"""Revoked task ids as a result backend keeps them, where every worker can read them.

    revoke(ids, ttl) ─► each id gets the next number of a sequence that never goes back,
                        and an expiry (now + ttl; revoking it again renews both)
    revocations(since=cursor) ─► the ids numbered after `cursor` that have not expired, the
                                 cursor to read from next time (the sequence's latest), and
                                 the sequence's epoch

So a worker reads the whole set once (`since=0`) and afterwards only what changed. A backend
that lost its sequence answers a cursor lower than the reader's (a Redis server emptied), or
another epoch: a sequence started again (a Redis server restarted without its data) gets a
new one, so a reader whose cursor the new sequence has already passed still sees that it
must start again from 0. The epoch is made with the sequence's first number and kept as long
as the sequence; a backend whose sequence cannot start again (SQLite's AUTOINCREMENT, the
memory engine's) answers "".

Bounded: at most `REVOKED_MAX` ids are kept, the oldest revocations going first, and expired
ones are deleted by the next revocation. The expiry a caller gives should outlast the longest
time the task's message may still wait in the broker (its eta or countdown, at most
`MAX_DELAY`) plus the result TTL: `forkq.revocation` sees to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

#: The most revoked ids a backend keeps (and a child holds in memory): the oldest revocation
#: goes first. Celery's workers keep 50,000 in memory too.
REVOKED_MAX = 50_000

#: The longest task id a revocation takes: ids forkq makes are 36 characters.
MAX_TASK_ID = 255


class Revocation(msgspec.Struct, frozen=True):
    """One revoked task id, and when its revocation expires (Unix time)."""

    task_id: str
    expires_at: float


class Revocations(msgspec.Struct, frozen=True):
    """What `ResultBackend.revocations(since)` found: the revocations numbered after `since`
    (oldest first, none expired), the cursor to give next time, and the sequence's epoch (a
    reader that read another epoch before reads again from 0)."""

    revoked: tuple[Revocation, ...]
    cursor: int
    epoch: str = ""


def check_revocation(task_ids: Sequence[str], ttl: float) -> None:
    """What a backend's `revoke` accepts: task ids that are non-empty strings of at most
    `MAX_TASK_ID` characters, and a TTL that is a finite number of seconds > 0 (ValueError)."""
    for task_id in task_ids:
        if not isinstance(task_id, str) or not 0 < len(task_id) <= MAX_TASK_ID:
            raise ValueError(
                f"a task id to revoke is a string of 1 to {MAX_TASK_ID} characters, "
                f"not {str(task_id)[:60]!r}"
            )
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl < math.inf:
        raise ValueError(f"a revocation's ttl must be a number of seconds > 0, not {ttl!r}")
