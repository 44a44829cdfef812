"""Revoked task ids in the result backend's SQLite file (the rules:
`forkq.engines.contract.revocations`).

Table, made on first use::

    forkq_revoked(seq INTEGER PRIMARY KEY AUTOINCREMENT, task_id UNIQUE, expires_at)

AUTOINCREMENT keeps the sequence in `sqlite_sequence`, never reusing a number, even once every
row is gone: that is the cursor readers are given. Revoking an id again replaces its row, which
takes the next number. A read takes the sequence first and then the rows numbered up to it, so
a revocation committed in between is left for the next read rather than skipped. Values are
read through casts: a row another program wrote reads as text and a number, or not at all.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from forkq.engines.contract import (
    REVOKED_MAX,
    Revocation,
    Revocations,
    check_revocation,
)
from forkq.engines.sqlite.file import transaction

_TABLE = (
    """CREATE TABLE IF NOT EXISTS forkq_revoked (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        task_id TEXT NOT NULL UNIQUE,
        expires_at REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS forkq_revoked_expiry ON forkq_revoked (expires_at)",
)


class Revoked:
    """The statements of the backend's connection for revocations."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._made = False

    def revoke(self, task_ids: Sequence[str], ttl: float) -> None:
        check_revocation(task_ids, ttl)
        conn = self._ready()
        with transaction(conn):
            now = time.time()
            conn.executemany(
                "INSERT OR REPLACE INTO forkq_revoked (task_id, expires_at) VALUES (?, ?)",
                [(task_id, now + ttl) for task_id in task_ids],
            )
            conn.execute("DELETE FROM forkq_revoked WHERE expires_at < ?", (now,))
            conn.execute(
                """DELETE FROM forkq_revoked WHERE seq <= (
                       SELECT seq FROM forkq_revoked ORDER BY seq DESC LIMIT 1 OFFSET ?)""",
                (REVOKED_MAX,),
            )

    def revocations(self, since: int) -> Revocations:
        conn = self._ready()
        row = conn.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'forkq_revoked'"
        ).fetchone()
        cursor = row[0] if row is not None and isinstance(row[0], int) else 0
        rows = conn.execute(
            """SELECT CAST(task_id AS BLOB), CAST(expires_at AS REAL) FROM forkq_revoked
               WHERE seq > ? AND seq <= ? AND CAST(expires_at AS REAL) >= ? ORDER BY seq""",
            (since, cursor, time.time()),
        ).fetchall()
        found = tuple(Revocation(bytes(t).decode(errors="replace"), e) for t, e in rows)
        return Revocations(found, cursor)

    def _ready(self) -> sqlite3.Connection:
        """The connection, its table made (once per connection)."""
        if not self._made:
            for statement in _TABLE:
                self._conn.execute(statement)
            self._made = True
        return self._conn
