"""Events in the result backend's SQLite file (the rules: `forkq.engines.contract.events`).

Table, made on first use::

    forkq_events(id INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB)

An event's offset is its id. AUTOINCREMENT never gives a number twice, even once every row is
gone, and writers take the write lock in turn, so ids grow in the order events were committed
and a reader never sees one before a smaller one. Adding inserts every body and trims in one
transaction: the rows more than `kept` below the newest id go (one range delete on the primary
key). Bodies are read through a cast: a row another program wrote reads as bytes, whatever
its type.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from forkq.engines.contract import (
    EventPage,
    StoredEvent,
    check_event_reading,
    check_events_kept,
)
from forkq.engines.sqlite.file import transaction

_TABLE = """CREATE TABLE IF NOT EXISTS forkq_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body BLOB NOT NULL)"""
_LARGEST = 2**63 - 1  # SQLite's largest integer


def event_offset(after: str | None) -> int:
    """The id an offset names (None: 0, before every event); ValueError for anything but a
    whole number SQLite can hold."""
    if after is None:
        return 0
    if not (after.isascii() and after.isdigit()) or len(after) > 19 or int(after) > _LARGEST:
        raise ValueError(
            f"an event offset on SQLite is a whole number such as 42, not {after[:40]!r}"
        )
    return int(after)


class SQLiteEvents:
    """The statements of the backend's connection for events."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._made = False

    def add(self, bodies: Sequence[bytes], kept: int) -> None:
        check_events_kept(kept)
        if not bodies:
            return
        conn = self._ready()
        with transaction(conn):
            conn.executemany(
                "INSERT INTO forkq_events (body) VALUES (?)", [(bytes(b),) for b in bodies]
            )
            conn.execute(
                "DELETE FROM forkq_events WHERE id <= (SELECT max(id) FROM forkq_events) - ?",
                (kept,),
            )

    def read(self, after: str | None, limit: int) -> EventPage:
        check_event_reading(limit)
        start = event_offset(after)
        rows = (
            self._ready()
            .execute(
                """SELECT id, CAST(body AS BLOB) FROM forkq_events WHERE id > ?
                   ORDER BY id LIMIT ?""",
                (start, limit),
            )
            .fetchall()
        )
        found = tuple(StoredEvent(str(i), b"" if b is None else bytes(b)) for i, b in rows)
        return EventPage(found, found[-1].offset if found else after or "")

    def last_offset(self) -> str | None:
        row = self._ready().execute("SELECT max(id) FROM forkq_events").fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def _ready(self) -> sqlite3.Connection:
        """The connection, its table made (once per connection)."""
        if not self._made:
            self._conn.execute(_TABLE)
            self._made = True
        return self._conn
