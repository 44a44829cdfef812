"""Rate and concurrency limits in the result backend's SQLite file (the rules:
`forkq.engines.contract.limits`). Each take is one write transaction (BEGIN IMMEDIATE), so the
processes of every worker on the host take from the same schedule and slots.

Tables, made on first use::

    forkq_rates(task, key, tat, last, expires_at)        a bucket's schedule: the next free
                                                         slot and the latest start (NULL:
                                                         none); gone once idle
    forkq_rate_holds(task, key, holder, slot, expires_at)   a holder's reservation
    forkq_rate_overrides(task, interval)                 `set_rate_override`
    forkq_slots(task, key, holder, expires_at)           a held concurrency slot, its lease
    forkq_slot_backoffs(task, key, holder, base, expires_at)   a holder's latest back-off

Values are read through casts: a row another program wrote reads as a number or as absent,
never as an error. Expired rows read as absent; they are deleted by the next take of their
bucket, and all of them at most once a minute per connection.
"""

from __future__ import annotations

import math
import random
import sqlite3
import time

from forkq.engines.contract import (
    NEVER,
    Backoff,
    RateState,
    check_interval,
    decide_rate,
    idle_after,
)
from forkq.engines.sqlite.file import transaction

_TABLES = (
    """CREATE TABLE IF NOT EXISTS forkq_rates (
        task TEXT NOT NULL, key TEXT NOT NULL, tat REAL NOT NULL, last REAL,
        expires_at REAL NOT NULL, PRIMARY KEY (task, key)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS forkq_rate_holds (
        task TEXT NOT NULL, key TEXT NOT NULL, holder TEXT NOT NULL, slot REAL NOT NULL,
        expires_at REAL NOT NULL, PRIMARY KEY (task, key, holder)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS forkq_rate_overrides (
        task TEXT PRIMARY KEY, interval REAL NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS forkq_slots (
        task TEXT NOT NULL, key TEXT NOT NULL, holder TEXT NOT NULL,
        expires_at REAL NOT NULL, PRIMARY KEY (task, key, holder)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS forkq_slot_backoffs (
        task TEXT NOT NULL, key TEXT NOT NULL, holder TEXT NOT NULL, base REAL NOT NULL,
        expires_at REAL NOT NULL, PRIMARY KEY (task, key, holder)) WITHOUT ROWID""",
)
_EXPIRING = ("forkq_rates", "forkq_rate_holds", "forkq_slots", "forkq_slot_backoffs")
CLEANUP_EVERY = 60.0  # seconds between deletions of every expired row, per connection
IDLE_MARGIN = 1.0  # seconds a bucket's schedule outlives the moment it is as good as new


class Limits:
    """The statements of the backend's connection for limits."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._made = False
        self._next_cleanup = 0.0

    def take_rate(self, task: str, key: str, interval: float, holder: str, keep: float) -> float:
        check_interval(interval)
        conn = self._ready(time.time())
        with transaction(conn):
            now = time.time()  # once the write lock is ours: the moment the take happens
            row = conn.execute(
                "SELECT CAST(interval AS REAL) FROM forkq_rate_overrides WHERE task = ?",
                (task,),
            ).fetchone()
            if row is not None and _interval(row[0]):
                interval = row[0]
            row = conn.execute(
                """SELECT CAST(tat AS REAL), CAST(last AS REAL) FROM forkq_rates
                   WHERE task = ? AND key = ? AND expires_at >= ?""",
                (task, key, now),
            ).fetchone()
            state = RateState() if row is None else RateState(row[0] or 0.0, _or_never(row[1]))
            row = conn.execute(
                """DELETE FROM forkq_rate_holds WHERE task = ? AND key = ? AND holder = ?
                   RETURNING CAST(slot AS REAL), expires_at >= ?""",
                (task, key, holder, now),
            ).fetchone()
            reservation = row[0] if row is not None and row[1] else None
            taken = decide_rate(state, reservation, now, interval)
            conn.execute(
                "INSERT OR REPLACE INTO forkq_rates VALUES (?, ?, ?, ?, ?)",
                (task, key, state.tat, _or_null(state.last), idle_after(state, interval) + 1),
            )
            if taken.reservation is not None:
                conn.execute(
                    "INSERT INTO forkq_rate_holds VALUES (?, ?, ?, ?, ?)",
                    (task, key, holder, taken.reservation, taken.reservation + keep),
                )
        return taken.wait

    def set_rate_override(self, task: str, interval: float | None) -> None:
        conn = self._ready(time.time())
        if interval is None:
            conn.execute("DELETE FROM forkq_rate_overrides WHERE task = ?", (task,))
            return
        check_interval(interval)
        conn.execute("INSERT OR REPLACE INTO forkq_rate_overrides VALUES (?, ?)", (task, interval))

    def rate_override(self, task: str) -> float | None:
        row = (
            self._ready(time.time())
            .execute(
                "SELECT CAST(interval AS REAL) FROM forkq_rate_overrides WHERE task = ?", (task,)
            )
            .fetchone()
        )
        return row[0] if row is not None and _interval(row[0]) else None

    def take_slot(
        self, task: str, key: str, holder: str, limit: int, lease: float, backoff: Backoff
    ) -> float:
        conn = self._ready(time.time())
        bucket = (task, key)
        with transaction(conn):
            now = time.time()  # once the write lock is ours
            conn.execute(
                "DELETE FROM forkq_slots WHERE task = ? AND key = ? AND expires_at < ?",
                (*bucket, now),
            )
            held = conn.execute(
                """SELECT count(*), count(*) FILTER (WHERE holder = ?) FROM forkq_slots
                   WHERE task = ? AND key = ?""",
                (holder, *bucket),
            ).fetchone()
            if held[1] or held[0] < limit:
                conn.execute(
                    "INSERT OR REPLACE INTO forkq_slots VALUES (?, ?, ?, ?)",
                    (*bucket, holder, now + lease),
                )
                conn.execute(
                    "DELETE FROM forkq_slot_backoffs WHERE task = ? AND key = ? AND holder = ?",
                    (*bucket, holder),
                )
                return 0.0
            row = conn.execute(
                """SELECT CAST(base AS REAL) FROM forkq_slot_backoffs
                   WHERE task = ? AND key = ? AND holder = ? AND expires_at >= ?""",
                (*bucket, holder, now),
            ).fetchone()
            previous = row[0] if row is not None and isinstance(row[0], float) else None
            base = backoff.next_base(previous)
            conn.execute(
                "INSERT OR REPLACE INTO forkq_slot_backoffs VALUES (?, ?, ?, ?, ?)",
                (*bucket, holder, base, now + backoff.kept),
            )
        return backoff.jittered(base, random.random())

    def release_slot(self, task: str, key: str, holder: str) -> None:
        conn = self._ready(time.time())
        with transaction(conn):
            for table in ("forkq_slots", "forkq_slot_backoffs"):
                conn.execute(
                    f"DELETE FROM {table} WHERE task = ? AND key = ? AND holder = ?",
                    (task, key, holder),
                )

    def _ready(self, now: float) -> sqlite3.Connection:
        """The connection, its tables made (once) and its expired rows gone (at most once a
        minute), outside any transaction."""
        conn = self._conn
        if not self._made:
            for table in _TABLES:
                conn.execute(table)
            self._made = True
        if now >= self._next_cleanup:
            self._next_cleanup = now + CLEANUP_EVERY
            with transaction(conn):
                for table in _EXPIRING:
                    conn.execute(f"DELETE FROM {table} WHERE expires_at < ?", (now,))
        return conn


def _interval(value: object) -> bool:
    """Whether a stored override is one `set_rate_override` could have written."""
    return isinstance(value, float) and 0 < value < math.inf


def _or_never(last: float | None) -> float:
    return NEVER if last is None else last


def _or_null(last: float) -> float | None:
    return None if last == NEVER else last
