"""The embedded SQLite result backend.

Schema::

    forkq_results(task_id PRIMARY KEY, state, payload, expires_at)
    forkq_starts(key PRIMARY KEY, count, expires_at)   made on first use (`count_start`)

Expired rows read as missing and are deleted in passing, at most once a minute per process.
`wait` blocks on the WAL (`ChangeWaiter`), so `AsyncResult.get()` wakes when a worker commits.
"""

from __future__ import annotations

import time

from forkq.engines.contract import Publish, ResultBackend, ScheduleStore, StoredResult
from forkq.engines.sqlite.file import ChangeWaiter, abandon, driver_errors_as, open_database
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
_CLEANUP_EVERY = 60.0


class SQLiteBackend(ResultBackend):
    def __init__(self, url: str) -> None:
        self.path, self._conn = open_database(
            url, "forkq_results", _SCHEMA, BackendError, "sqlite result backend"
        )
        self._errors = driver_errors_as(BackendError, f"sqlite result backend {self.path}")
        self._waiter: ChangeWaiter | None = None
        self._has_starts_table = False
        self._next_cleanup = time.time() + _CLEANUP_EVERY

    def store(self, task_id: str, state: str, payload: bytes, ttl: float) -> None:
        now = time.time()
        with self._errors:
            self._conn.execute(
                "INSERT OR REPLACE INTO forkq_results VALUES (?, ?, ?, ?)",
                (task_id, state, payload, now + ttl),
            )
            if now >= self._next_cleanup:
                self._next_cleanup = now + _CLEANUP_EVERY
                self._conn.execute("DELETE FROM forkq_results WHERE expires_at < ?", (now,))

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

    def schedule_store(self, publish: Publish) -> ScheduleStore:
        """Schedules in this file, each fire recorded here, then sent with `publish`."""
        return SQLiteSchedules(self._conn, self._errors, publish)

    def close(self) -> None:
        if self._waiter is not None:
            self._waiter.close()
        self._conn.close()

    def abandon(self) -> None:
        abandon(self._conn)
