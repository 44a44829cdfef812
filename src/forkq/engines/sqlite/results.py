"""The embedded SQLite result backend.

Schema::

    forkq_results(task_id PRIMARY KEY, state, payload, expires_at)
    forkq_fences(task_id PRIMARY KEY, sending, attempt, expires_at)   made at open (`records`)
    forkq_starts(key PRIMARY KEY, count, expires_at)   made on first use (`count_start`)
    forkq_locks(key PRIMARY KEY, holder, expires_at)   made on first use (`lock`)
    forkq_chords, forkq_chord_members                  made on first use (`vote`): `records`
    forkq_rates, forkq_slots, ...                      made on first use (limits): `limits`
    forkq_revoked                                      made on first use: `revocations`
    forkq_events                                       made on first use: `events`

Expired rows read as missing and are deleted in passing, at most once a minute per process.
The writes and the chord counts are `Records`' statements, which the SQLite broker's session
also runs on its own connection when the results share its file (one transaction per finish).
`wait` blocks on the WAL (`ChangeWaiter`), so `AsyncResult.get()` wakes when a worker commits.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from contextlib import nullcontext

from forkq.engines.contract import (
    BACKOFF,
    RESERVATION_KEPT,
    Backoff,
    ChordVote,
    EventPage,
    Fence,
    Publish,
    ResultBackend,
    ResultWrite,
    Revocations,
    ScheduleStore,
    StoredResult,
)
from forkq.engines.sqlite.events import SQLiteEvents
from forkq.engines.sqlite.file import (
    ChangeWaiter,
    abandon,
    driver_errors_as,
    open_database,
    transaction,
)
from forkq.engines.sqlite.limits import Limits
from forkq.engines.sqlite.records import FENCES, Records
from forkq.engines.sqlite.revocations import Revoked
from forkq.engines.sqlite.schedules import SQLiteSchedules
from forkq.exceptions import BackendError
from forkq.states import READY_STATES

_SCHEMA = """
CREATE TABLE IF NOT EXISTS forkq_results (
    task_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    payload BLOB NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
"""
_STARTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS forkq_starts (
    key TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID
"""
_LOCKS_SCHEMA = """
CREATE TABLE IF NOT EXISTS forkq_locks (
    key TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID
"""
_CLEANUP_EVERY = 60.0
# Ids read by one query of `get_many`: under SQLite's default limit of bound parameters
# (32766 since 3.32; forkq needs 3.35, for RETURNING), the expiry time being one more.
_IDS_AT_ONCE = 32_000


class SQLiteBackend(ResultBackend):
    def __init__(self, url: str) -> None:
        self.path, self._conn = open_database(
            url, "forkq_results", _SCHEMA, BackendError, "sqlite result backend"
        )
        self._errors = driver_errors_as(BackendError, f"sqlite result backend {self.path}")
        self._waiter: ChangeWaiter | None = None
        self._has_starts_table = False
        self._has_locks_table = False
        self._next_cleanup = time.time() + _CLEANUP_EVERY
        self._make_fences_table()
        self._records = Records(self._conn, time.time())
        self._limits = Limits(self._conn)
        self._revoked = Revoked(self._conn)
        self._events = SQLiteEvents(self._conn)

    def _make_fences_table(self) -> None:
        """forkq_fences (`Records.store` reads it), which files made before the results were
        fenced lack; not by a process that may only read the file (it stores nothing)."""
        with self._errors:
            found = self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'forkq_fences'"
            ).fetchone()
            if found is None and os.access(self.path, os.W_OK):
                self._conn.execute(FENCES)

    def store(
        self, task_id: str, state: str, payload: bytes, ttl: float, fence: Fence | None = None
    ) -> None:
        now = time.time()
        write = ResultWrite(task_id, state, payload, ttl, fence)
        # A first run's write is one statement; any other, two (the record and its fence).
        alone = fence is not None and fence.attempt <= 1
        with self._errors, nullcontext() if alone else transaction(self._conn):
            self._records.store([write], now)

    def store_all(self, writes: Sequence[ResultWrite]) -> None:
        """In one transaction."""
        if not writes:
            return
        now = time.time()
        with self._errors, transaction(self._conn):
            self._records.store(writes, now)

    def vote(self, writes: Sequence[ResultWrite], vote: ChordVote) -> bool:
        """The writes and the count in one transaction."""
        now = time.time()
        with self._errors:
            self._records.make_chord_tables()
            with transaction(self._conn):
                self._records.store(writes, now)
                return self._records.vote(vote, now)

    def fired(self, vote: ChordVote) -> None:
        with self._errors:
            self._records.fired(vote)

    def get(self, task_id: str) -> StoredResult | None:
        with self._errors:
            # Read as bytes: a row another program wrote may hold any type (an integer
            # "payload" would be bytes(n) zero bytes; text that is not UTF-8 fails to decode).
            row = self._conn.execute(
                """SELECT CAST(state AS BLOB), CAST(payload AS BLOB) FROM forkq_results
                   WHERE task_id = ? AND expires_at >= ?""",
                (task_id, time.time()),
            ).fetchone()
        return None if row is None else StoredResult(row[0].decode(errors="replace"), row[1])

    def get_many(self, task_ids: Sequence[str]) -> list[StoredResult | None]:
        """One query (per 32,000 ids), read as `get` reads a row."""
        found: dict[str, StoredResult] = {}
        now = time.time()
        with self._errors:
            for start in range(0, len(task_ids), _IDS_AT_ONCE):
                chunk = task_ids[start : start + _IDS_AT_ONCE]
                rows = self._conn.execute(
                    f"""SELECT task_id, CAST(state AS BLOB), CAST(payload AS BLOB)
                        FROM forkq_results WHERE task_id IN ({",".join("?" * len(chunk))})
                        AND expires_at >= ?""",
                    (*chunk, now),
                ).fetchall()
                for task_id, state, payload in rows:
                    found[task_id] = StoredResult(state.decode(errors="replace"), payload)
        return [found.get(task_id) for task_id in task_ids]

    def wait(self, task_id: str, timeout: float) -> StoredResult | None:
        if self._waiter is None:
            self._waiter = ChangeWaiter(self.path)
        deadline = time.monotonic() + timeout
        while True:
            self._waiter.arm()
            result = self.get(task_id)
            remaining = deadline - time.monotonic()
            if (result is not None and result.state in READY_STATES) or remaining <= 0:
                return result
            self._waiter.wait(remaining)

    def forget(self, task_id: str) -> None:
        with self._errors:
            self._conn.execute("DELETE FROM forkq_results WHERE task_id = ?", (task_id,))
            self._conn.execute("DELETE FROM forkq_fences WHERE task_id = ?", (task_id,))

    def count_start(self, key: str, ttl: float) -> int:
        now = time.time()
        with self._errors:
            self._make_starts_table()
            self._conn.execute("DELETE FROM forkq_starts WHERE expires_at < ?", (now,))
            row = self._conn.execute(
                """INSERT INTO forkq_starts VALUES (?, 1, ?) ON CONFLICT (key) DO UPDATE
                   SET count = CASE WHEN expires_at < ? THEN 1 ELSE count + 1 END,
                       expires_at = excluded.expires_at
                   RETURNING count""",
                (key, now + ttl, now),
            ).fetchone()
        return int(row[0])

    def forget_starts(self, key: str) -> None:
        with self._errors:
            self._make_starts_table()
            self._conn.execute("DELETE FROM forkq_starts WHERE key = ?", (key,))

    def _make_starts_table(self) -> None:
        """Made on first use (returned deliveries only), once per connection."""
        if not self._has_starts_table:
            self._conn.execute(_STARTS_SCHEMA)
            self._has_starts_table = True

    def lock(self, key: str, holder: str, ttl: float) -> str | None:
        now = time.time()
        with self._errors:
            self._make_locks_table()
            # Taken when absent, expired or ours; otherwise the upsert's WHERE leaves the row
            # and RETURNING gives nothing: then whoever holds it is read in the same
            # transaction (the write lock is held), so it cannot change in between.
            with transaction(self._conn):
                taken = self._conn.execute(
                    """INSERT INTO forkq_locks VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE
                       SET holder = excluded.holder, expires_at = excluded.expires_at
                       WHERE expires_at < ? OR holder = excluded.holder
                       RETURNING holder""",
                    (key, holder, now + ttl, now),
                ).fetchone()
                if taken is not None:
                    return None
                row = self._conn.execute(
                    "SELECT CAST(holder AS BLOB) FROM forkq_locks WHERE key = ?", (key,)
                ).fetchone()
        return bytes(row[0]).decode(errors="replace")

    def unlock(self, key: str, holder: str) -> None:
        with self._errors:
            self._make_locks_table()
            self._conn.execute(
                "DELETE FROM forkq_locks WHERE key = ? AND holder = ?", (key, holder)
            )

    def _make_locks_table(self) -> None:
        """Made on first use (unique tasks only), once per connection."""
        if not self._has_locks_table:
            self._conn.execute(_LOCKS_SCHEMA)
            self._has_locks_table = True

    def revoke(self, task_ids: Sequence[str], ttl: float) -> None:
        with self._errors:
            self._revoked.revoke(task_ids, ttl)

    def revocations(self, since: int = 0) -> Revocations:
        with self._errors:
            return self._revoked.revocations(since)

    def schedule_store(self, publish: Publish) -> ScheduleStore:
        """Schedules in this file, each fire recorded here, then sent with `publish`."""
        return SQLiteSchedules(self._conn, self._errors, publish)

    def take_rate(
        self, task: str, key: str, interval: float, holder: str, keep: float = RESERVATION_KEPT
    ) -> float:
        with self._errors:
            return self._limits.take_rate(task, key, interval, holder, keep)

    def set_rate_override(self, task: str, interval: float | None) -> None:
        with self._errors:
            self._limits.set_rate_override(task, interval)

    def rate_override(self, task: str) -> float | None:
        with self._errors:
            return self._limits.rate_override(task)

    def take_slot(
        self,
        task: str,
        key: str,
        holder: str,
        limit: int,
        lease: float,
        backoff: Backoff = BACKOFF,
    ) -> float:
        with self._errors:
            return self._limits.take_slot(task, key, holder, limit, lease, backoff)

    def release_slot(self, task: str, key: str, holder: str) -> None:
        with self._errors:
            self._limits.release_slot(task, key, holder)

    def add_events(self, bodies: Sequence[bytes], kept: int) -> None:
        """The bodies and the trim in one transaction (`events.py`)."""
        with self._errors:
            self._events.add(bodies, kept)

    def read_events(self, after: str | None, limit: int) -> EventPage:
        with self._errors:
            return self._events.read(after, limit)

    def last_event_offset(self) -> str | None:
        with self._errors:
            return self._events.last_offset()

    def close(self) -> None:
        if self._waiter is not None:
            self._waiter.close()
        self._conn.close()

    def abandon(self) -> None:
        abandon(self._conn)
