"""Schedules' lease and records in a SQLite file: the broker's (a fire's record and its message
in one transaction) or, under RabbitMQ, the result backend's (recorded, then published).

Schema (made on first use, in the file's one schema version)::

    forkq_schedules(name PRIMARY KEY, due_ms, fired_at_ms, task_id)   a schedule's record
    forkq_leases(name PRIMARY KEY, holder, until)                      until: Unix time

Every process on the host shares the file and its clock, so a lease's `until` is compared
with the reader's `time.time()`. Rows are read defensively: a due time or lease end that is
not a number (written by another program) counts as none, and can be replaced.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence

from forkq.engines.contract import (
    Fire,
    FireRecord,
    Lease,
    Publish,
    ScheduleStore,
    record_then_publish,
)
from forkq.engines.contract.errors import DriverErrors
from forkq.engines.sqlite import holds
from forkq.engines.sqlite.file import ensure_schema, transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS forkq_schedules (
    name TEXT PRIMARY KEY,
    due_ms INTEGER NOT NULL,
    fired_at_ms INTEGER NOT NULL,
    task_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS forkq_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until REAL NOT NULL
) WITHOUT ROWID;
"""

# Recorded only if newer than the record (or the record is junk); a row comes back when it was.
_CLAIM = """
INSERT INTO forkq_schedules (name, due_ms, fired_at_ms, task_id) VALUES (?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET
    due_ms = excluded.due_ms, fired_at_ms = excluded.fired_at_ms, task_id = excluded.task_id
WHERE typeof(forkq_schedules.due_ms) <> 'integer' OR excluded.due_ms > forkq_schedules.due_ms
RETURNING name
"""
_READ = """SELECT CAST(due_ms AS INTEGER), CAST(fired_at_ms AS INTEGER), CAST(task_id AS TEXT)
    FROM forkq_schedules WHERE name = ? AND typeof(due_ms) = 'integer'"""
_HOLD = """
INSERT INTO forkq_leases (name, holder, until) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
WHERE forkq_leases.holder = excluded.holder
    OR typeof(forkq_leases.until) NOT IN ('integer', 'real') OR forkq_leases.until < ?
RETURNING name
"""


class SQLiteSchedules(ScheduleStore):
    """`publish` None: the broker's file, where a fire's message is a row of forkq_messages
    inserted in the same transaction as its record."""

    def __init__(
        self, conn: sqlite3.Connection, errors: DriverErrors[sqlite3.Error], publish: Publish | None
    ) -> None:
        self._conn, self._errors, self._publish = conn, errors, publish
        self.atomic = publish is None
        with errors:
            ensure_schema(conn, "forkq_leases", SCHEMA)

    def hold(self, lease: str, holder: str, ttl: float) -> bool:
        now = time.time()
        with self._errors:
            row = self._conn.execute(_HOLD, (lease, holder, now + ttl, now)).fetchone()
        return row is not None

    def release(self, lease: str, holder: str) -> None:
        with self._errors:
            self._conn.execute(
                "DELETE FROM forkq_leases WHERE name = ? AND holder = ?", (lease, holder)
            )

    def leader(self, lease: str) -> Lease | None:
        with self._errors:
            row = self._conn.execute(
                """SELECT CAST(holder AS TEXT), until FROM forkq_leases WHERE name = ?
                    AND typeof(until) IN ('integer', 'real') AND until >= ?""",
                (lease, time.time()),
            ).fetchone()
        return None if row is None else Lease(row[0], float(row[1]))

    def fire(self, fires: Sequence[Fire]) -> list[bool]:
        if self._publish is not None:
            return record_then_publish(fires, self._claim, self._unclaim, self._publish)
        now = time.time()
        with self._errors, transaction(self._conn):
            done = []
            for f in fires:
                new = self._record(f, now)
                if new and f.message is not None:
                    holds.publish(self._conn, (f.message,), now)
                done.append(new)
        return done

    def _record(self, f: Fire, now: float) -> bool:
        values = (f.schedule, f.due_ms, int(now * 1000), f.task_id)
        return self._conn.execute(_CLAIM, values).fetchone() is not None

    def _claim(self, f: Fire) -> tuple[bool, FireRecord | None]:
        with self._errors, transaction(self._conn):
            before = self._read(f.schedule)
            return self._record(f, time.time()), before

    def _unclaim(self, f: Fire, before: FireRecord | None) -> None:
        with self._errors, transaction(self._conn):
            mine = "name = ? AND due_ms = ? AND task_id = ?"
            if before is None:
                self._conn.execute(
                    f"DELETE FROM forkq_schedules WHERE {mine}", (f.schedule, f.due_ms, f.task_id)
                )
                return
            self._conn.execute(
                f"UPDATE forkq_schedules SET due_ms = ?, fired_at_ms = ?, task_id = ? WHERE {mine}",
                (
                    before.due_ms,
                    before.fired_at_ms,
                    before.task_id,
                    f.schedule,
                    f.due_ms,
                    f.task_id,
                ),
            )

    def _read(self, name: str) -> FireRecord | None:
        row = self._conn.execute(_READ, (name,)).fetchone()
        return None if row is None else FireRecord(int(row[0]), int(row[1] or 0), row[2] or "")

    def records(self, queues: Mapping[str, str]) -> dict[str, FireRecord]:
        with self._errors:
            found = {name: self._read(name) for name in queues}
        return {name: record for name, record in found.items() if record is not None}
