"""The embedded SQLite broker: at-least-once delivery through leases, no server needed.

Schema (the messages, and who consumes what; the dead letters' tables are
`forkq.engines.sqlite.dead`'s)::

    forkq_messages(id, queue, priority, visible_at, body, deliveries, owner, worker, lease_until)
        owner IS NULL      -> ready once visible_at <= now (countdown/eta sets visible_at)
        owner = consumer   -> held; deliveries was incremented when fetched
        lease_until        -> pushed forward by the owning worker's heartbeat; a lease that
                              runs out (the whole worker died) is taken back by any consumer
    forkq_workers(queue, worker, seen_at)   the latest heartbeat of each worker per queue it
                                            consumes; beats older than a day are deleted

Fetching claims rows with one `UPDATE ... RETURNING`, so two consumers never hold the same
message. Waiting for work is a blocking inotify wait on the database's WAL (`ChangeWaiter`).

SQLite keeps whatever type a writer gives a column, so every read of a row checks types in SQL
before Python sees a value: a claimed row that is malformed (see `_MALFORMED`) goes to the dead
letters with the reason, in a second statement run only when there is one.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any

from forkq.engines.contract import (
    DEFAULT_DEAD_CAPS,
    LAST_MOMENT,
    SIGHTINGS_KEPT,
    Broker,
    Consumer,
    DeadLetter,
    DeadLetterCaps,
    Delivery,
    Sighting,
    check_fetch_args,
    lease_ttl_from_url,
)
from forkq.engines.sqlite import dead as sqlite_dead
from forkq.engines.sqlite.file import (
    ChangeWaiter,
    abandon,
    driver_errors_as,
    ensure_schema,
    open_database,
)
from forkq.exceptions import BrokerError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS forkq_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    visible_at REAL NOT NULL,
    body BLOB NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    worker TEXT,
    lease_until REAL
);
CREATE INDEX IF NOT EXISTS forkq_messages_ready
    ON forkq_messages(queue, priority DESC, visible_at, id) WHERE owner IS NULL;
CREATE INDEX IF NOT EXISTS forkq_messages_owner
    ON forkq_messages(owner) WHERE owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS forkq_messages_worker
    ON forkq_messages(worker) WHERE worker IS NOT NULL;
"""
_SCHEMA += sqlite_dead.TABLE

# Which workers consume which queues, as their heartbeats say (`consumers_seen`). Added to
# files made before it by ensure_schema when missing (idempotent, as the caps' schema).
_WORKERS = """
CREATE TABLE IF NOT EXISTS forkq_workers (
    queue TEXT NOT NULL,
    worker TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (queue, worker)
);
"""

_UNHOLD = "owner = NULL, worker = NULL, lease_until = NULL"

# Why a claimed row is malformed, NULL when it is well formed; a row due after LAST_MOMENT (or
# whose visible_at is text or a blob, which SQLite sorts after every number) is. It shows types
# and numbers only, never a column's text, which may not even be UTF-8. `deliveries` is read
# after the claim: the claim counts only a stored count (an INTEGER >= 0) and leaves anything
# else as it was.
_MALFORMED = f"""CASE
    WHEN typeof(body) != 'blob' THEN 'body is ' || upper(typeof(body)) || ', not BLOB'
    WHEN typeof(priority) != 'integer'
        THEN 'priority is ' || upper(typeof(priority)) || ', not INTEGER'
    WHEN priority NOT BETWEEN 0 AND 9 THEN 'priority ' || priority || ' is not 0-9'
    WHEN typeof(visible_at) NOT IN ('integer', 'real')
        THEN 'visible_at is ' || upper(typeof(visible_at)) || ', not REAL'
    WHEN visible_at > {LAST_MOMENT} THEN 'visible_at ' || visible_at || ' is after year 9999'
    WHEN typeof(deliveries) != 'integer'
        THEN 'deliveries is ' || upper(typeof(deliveries)) || ', not INTEGER'
    WHEN deliveries < 0 THEN 'deliveries ' || deliveries || ' is negative'
END"""
_COUNTED = (
    "CASE WHEN typeof(deliveries) = 'integer' AND deliveries BETWEEN 0 AND 9223372036854775806"
    " THEN deliveries + 1 ELSE deliveries END"
)


class SQLiteBroker(Broker):
    def __init__(self, url: str, dead_caps: DeadLetterCaps = DEFAULT_DEAD_CAPS) -> None:
        self.lease_ttl = lease_ttl_from_url(url)
        self.dead_caps = dead_caps
        self.path, self._conn = open_database(
            url, "forkq_messages", _SCHEMA, BrokerError, "sqlite broker"
        )
        with self._errors():
            ensure_schema(self._conn, "forkq_dead_counts", sqlite_dead.CAPS)
            ensure_schema(self._conn, "forkq_workers", _WORKERS)
        self.url = url
        self._waiter: ChangeWaiter | None = None  # made when a fetch first has to wait
        self._next_recovery = 0.0

    def publish(self, queue: str, body: bytes, *, priority: int = 0, delay: float = 0.0) -> None:
        with self._errors():
            self._conn.execute(
                "INSERT INTO forkq_messages (queue, priority, visible_at, body) VALUES (?,?,?,?)",
                (queue, _clamp_priority(priority), time.time() + max(0.0, delay), body),
            )

    def publish_many(self, items: Sequence[tuple[str, bytes, int, float]]) -> None:
        """Bulk publish in one transaction: (queue, body, priority, delay) tuples."""
        now = time.time()
        rows = [(q, _clamp_priority(p), now + max(0.0, d), b) for q, b, p, d in items]
        with self._errors(), self._transaction():
            self._conn.executemany(
                "INSERT INTO forkq_messages (queue, priority, visible_at, body) VALUES (?,?,?,?)",
                rows,
            )

    def fetch(
        self, consumer: Consumer, queues: Sequence[str], limit: int, timeout: float
    ) -> list[Delivery]:
        check_fetch_args(queues, limit)
        deadline = time.monotonic() + timeout
        while True:
            if self._waiter is not None:
                self._waiter.arm()
            with self._errors():
                self._recover_expired_leases()
                deliveries, buried = self._claim(consumer, queues, limit)
                if deliveries:
                    return deliveries
                if buried:
                    continue  # only malformed rows came: look again at once
                next_due = self._next_due(queues)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            if self._waiter is None:
                # Made only once a fetch has to wait, then looked again before waiting: a
                # child with work queued never pays for an inotify watch (~5 ms to close).
                self._waiter = ChangeWaiter(self.path)
                continue
            # Wake for the next delayed message, and to take back leases that may have expired.
            wake_at = (
                self._next_recovery if next_due is None else min(next_due, self._next_recovery)
            )
            self._waiter.wait(min(remaining, max(0.001, wake_at - time.time())))

    def _claim(
        self, consumer: Consumer, queues: Sequence[str], limit: int
    ) -> tuple[list[Delivery], int]:
        """Hold the best visible rows; return the well-formed ones, and how many were not
        (those are dead-lettered). A row due after year 9999 or with a visible_at that is not a
        number counts as visible, so that it is claimed and dead-lettered, not kept forever.
        The casts keep junk in a malformed row from reaching Python's decoders."""
        now = time.time()
        marks = ",".join("?" * len(queues))
        rows = self._conn.execute(
            f"""UPDATE forkq_messages
                SET owner = ?, worker = ?, lease_until = ?, deliveries = {_COUNTED}
                WHERE id IN (
                    SELECT id FROM forkq_messages
                    WHERE owner IS NULL AND queue IN ({marks})
                        AND (visible_at <= ? OR visible_at > {LAST_MOMENT})
                    ORDER BY priority DESC, visible_at, id LIMIT ?)
                RETURNING id, queue, CAST(body AS BLOB), CAST(deliveries AS INTEGER),
                    CAST(priority AS INTEGER), CAST(visible_at AS REAL), {_MALFORMED}""",
            (consumer.name, consumer.worker, now + self.lease_ttl, *queues, now, limit),
        ).fetchall()
        good = [r for r in rows if r[6] is None]
        if len(good) < len(rows):
            self._bury(consumer, [r for r in rows if r[6] is not None], [r[0] for r in rows])
        good.sort(key=lambda r: (-r[4], r[5], r[0]))  # RETURNING order is unspecified
        return [Delivery(str(r[0]), r[1], r[2], r[3]) for r in good], len(rows) - len(good)

    def _bury(self, consumer: Consumer, malformed: list[Any], claimed: list[int]) -> None:
        """Move malformed claimed rows to the dead letters, each column made fit to read.
        If that fails, everything this fetch claimed goes back before the error is raised."""
        try:
            with self._transaction():
                moves = [(r[0], r[1], f"malformed row: {r[6]}") for r in malformed]
                sqlite_dead.move_dead(self._conn, self.dead_caps, consumer.name, moves)
        except sqlite3.Error:
            marks = ",".join("?" * len(claimed))
            with suppress(sqlite3.Error):
                self._conn.execute(
                    f"""UPDATE forkq_messages SET {_UNHOLD}, deliveries = MAX(deliveries - 1, 0)
                        WHERE id IN ({marks}) AND owner = ?""",
                    (*claimed, consumer.name),
                )
            raise

    def _next_due(self, queues: Sequence[str]) -> float | None:
        """The earliest visible_at of the waiting rows; 0 for a malformed one (it is claimed,
        and dead-lettered, by the next look)."""
        marks = ",".join("?" * len(queues))
        row = self._conn.execute(
            f"""SELECT MIN(CASE WHEN visible_at <= {LAST_MOMENT} THEN visible_at ELSE 0.0 END)
                FROM forkq_messages WHERE owner IS NULL AND queue IN ({marks})""",
            tuple(queues),
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def _recover_expired_leases(self) -> None:
        now = time.time()
        if now < self._next_recovery:
            return
        self._next_recovery = now + self.lease_ttl / 4
        # A lease that is not a number up to year 9999 (text, a blob, NULL, inf) never runs out
        # by itself: it is taken back as if it had.
        self._conn.execute(
            f"""UPDATE forkq_messages SET {_UNHOLD} WHERE owner IS NOT NULL
                AND (lease_until < ? OR lease_until > {LAST_MOMENT} OR lease_until IS NULL)""",
            (now,),
        )

    def ack(self, consumer: Consumer, delivery: Delivery) -> None:
        with self._errors():
            self._conn.execute(
                "DELETE FROM forkq_messages WHERE id = ? AND owner = ?",
                (int(delivery.receipt), consumer.name),
            )

    def requeue(self, consumer: Consumer, delivery: Delivery, delay: float = 0.0) -> None:
        with self._errors():
            self._conn.execute(
                f"""UPDATE forkq_messages SET {_UNHOLD}, visible_at = ?,
                    deliveries = MAX(deliveries - 1, 0) WHERE id = ? AND owner = ?""",
                (time.time() + max(0.0, delay), int(delivery.receipt), consumer.name),
            )

    def dead_letter(self, consumer: Consumer, delivery: Delivery, reason: str) -> None:
        with self._errors(), self._transaction():
            moves = [(int(delivery.receipt), delivery.queue, reason)]
            sqlite_dead.move_dead(self._conn, self.dead_caps, consumer.name, moves)

    def release(
        self,
        consumer_name: str,
        running: Collection[str] = (),
        finished: Collection[tuple[str, str]] = (),  # this engine keeps no acks back
    ) -> int:
        started = [int(r) for r in running]
        marks = ",".join("?" * len(started)) or "NULL"
        with self._errors():
            return self._conn.execute(
                f"""UPDATE forkq_messages SET {_UNHOLD}, deliveries = CASE
                        WHEN id IN ({marks}) THEN deliveries ELSE MAX(deliveries - 1, 0) END
                    WHERE owner = ?""",
                (*started, consumer_name),
            ).rowcount

    def heartbeat(self, worker: str, queues: Sequence[str] = ()) -> None:
        now = time.time()
        with self._errors(), self._transaction():
            self._conn.execute(
                "UPDATE forkq_messages SET lease_until = ? WHERE worker = ?",
                (now + self.lease_ttl, worker),
            )
            self._conn.executemany(
                """INSERT INTO forkq_workers (queue, worker, seen_at) VALUES (?, ?, ?)
                    ON CONFLICT (queue, worker) DO UPDATE SET seen_at = excluded.seen_at""",
                [(queue, worker, now) for queue in queues],
            )
            self._conn.execute(
                "DELETE FROM forkq_workers WHERE seen_at < ?", (now - SIGHTINGS_KEPT,)
            )

    def consumers_seen(self, queue: str, within: float) -> list[Sighting]:
        with self._errors():
            rows = self._conn.execute(
                """SELECT CAST(worker AS TEXT), CAST(seen_at AS REAL) FROM forkq_workers
                    WHERE queue = ? AND seen_at >= ? ORDER BY seen_at DESC""",
                (queue, time.time() - within),
            ).fetchall()
        return [Sighting(worker, seen_at) for worker, seen_at in rows]

    def purge(self, queue: str) -> int:
        with self._errors():
            return self._conn.execute(
                "DELETE FROM forkq_messages WHERE queue = ? AND owner IS NULL", (queue,)
            ).rowcount

    def size(self, queue: str) -> int:
        with self._errors():
            row = self._conn.execute(
                "SELECT COUNT(*) FROM forkq_messages WHERE queue = ?", (queue,)
            ).fetchone()
        return int(row[0])

    def dead_letters(self, queue: str | None = None, limit: int = 100) -> list[DeadLetter]:
        with self._errors():
            return sqlite_dead.read_dead(self._conn, queue, limit)

    def requeue_dead(self, receipts: Collection[str] | None = None) -> int:
        with self._errors(), self._transaction():
            return sqlite_dead.requeue_dead(self._conn, receipts)

    def purge_dead(self, queue: str | None = None) -> int:
        with self._errors():
            return sqlite_dead.purge_dead(self._conn, queue)

    def close(self) -> None:
        if self._waiter is not None:
            self._waiter.close()
        self._conn.close()

    def abandon(self) -> None:
        abandon(self._conn)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _errors(self) -> AbstractContextManager[None]:
        return driver_errors_as(BrokerError, f"sqlite broker {self.path}")


def _clamp_priority(priority: int) -> int:
    return min(9, max(0, int(priority)))
