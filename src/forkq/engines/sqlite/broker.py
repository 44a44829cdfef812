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

A consumer fetches and settles through its session (`forkq.engines.sqlite.session`), which
shares this broker's connection; what becomes of held rows is `forkq.engines.sqlite.holds`'s.
The broker publishes, releases what a dead consumer held, beats, and administers queues.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence

from forkq.engines.contract import (
    DEFAULT_DEAD_CAPS,
    PRIORITY_BANDS,
    SIGHTINGS_KEPT,
    Broker,
    Capabilities,
    Consumer,
    ConsumerSession,
    DeadLetter,
    DeadLetterCaps,
    Leftovers,
    Outgoing,
    QueueDepth,
    Recovery,
    ResultBackend,
    ScheduleStore,
    Sighting,
    lease_ttl_from_url,
)
from forkq.engines.sqlite import dead, holds
from forkq.engines.sqlite.file import (
    abandon,
    driver_errors_as,
    ensure_schema,
    open_database,
    transaction,
)
from forkq.engines.sqlite.schedules import SQLiteSchedules
from forkq.engines.sqlite.session import SQLiteSession
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
_SCHEMA += dead.TABLE

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


class SQLiteBroker(Broker):
    #: Each ack is one statement of its own: none is kept back.
    capabilities = Capabilities(Recovery.LEASE)

    def __init__(self, url: str, dead_caps: DeadLetterCaps = DEFAULT_DEAD_CAPS) -> None:
        super().__init__()
        self.lease_ttl = lease_ttl_from_url(url)
        self.dead_caps = dead_caps
        self.path, self._conn = open_database(
            url, "forkq_messages", _SCHEMA, BrokerError, "sqlite broker"
        )
        self._errors = driver_errors_as(BrokerError, f"sqlite broker {self.path}")
        with self._errors:
            ensure_schema(self._conn, "forkq_dead_counts", dead.CAPS)
            ensure_schema(self._conn, "forkq_workers", _WORKERS)

    def publish(self, messages: Sequence[Outgoing]) -> None:
        """One message: one INSERT. Several: one transaction."""
        now = time.time()
        with self._errors:
            if len(messages) == 1:
                holds.publish(self._conn, messages, now)
            elif messages:
                with transaction(self._conn):
                    holds.publish(self._conn, messages, now)

    def _open_session(self, consumer: Consumer, results: ResultBackend) -> ConsumerSession:
        return SQLiteSession(
            consumer,
            results,
            self.capabilities,
            self._conn,
            self.path,
            self.lease_ttl,
            self.dead_caps,
        )

    def _release(self, consumer: Consumer, leftovers: Leftovers) -> int:
        """In one transaction: the finished acked, the dead dead-lettered, the rest back."""
        finished = [holds.row_id(receipt) for _, receipt in leftovers.finished]
        moves = [(holds.row_id(v.receipt), v.queue, v.reason) for v in leftovers.dead]
        with self._errors, transaction(self._conn):
            holds.ack_all(self._conn, consumer.name, finished)
            if moves:
                dead.move_dead(self._conn, self.dead_caps, consumer.name, moves)
            return holds.release(self._conn, consumer.name, leftovers.running)

    def heartbeat(self, worker: str, queues: Sequence[str] = ()) -> None:
        now = time.time()
        with self._errors, transaction(self._conn):
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
        with self._errors:
            rows = self._conn.execute(
                """SELECT CAST(worker AS TEXT), CAST(seen_at AS REAL) FROM forkq_workers
                    WHERE queue = ? AND seen_at >= ? ORDER BY seen_at DESC""",
                (queue, time.time() - within),
            ).fetchall()
        return [Sighting(worker, seen_at) for worker, seen_at in rows]

    def _purge(self, queue: str) -> int:
        with self._errors:
            return self._conn.execute(
                "DELETE FROM forkq_messages WHERE queue = ? AND owner IS NULL", (queue,)
            ).rowcount

    def _size(self, queue: str) -> int:
        with self._errors:
            row = self._conn.execute(
                "SELECT COUNT(*) FROM forkq_messages WHERE queue = ?", (queue,)
            ).fetchone()
        return int(row[0])

    def _depth(self, queue: str) -> QueueDepth:
        """Delayed: not held and not visible yet (a countdown, an eta, a retry's wait); the
        others counted by priority band."""
        with self._errors:
            rows = self._conn.execute(
                "SELECT MIN(?, MAX(0, CAST(priority AS INTEGER)) / 3), "
                "owner IS NULL AND visible_at > ?, COUNT(*) "
                "FROM forkq_messages WHERE queue = ? GROUP BY 1, 2",
                (len(PRIORITY_BANDS) - 1, time.time(), queue),
            ).fetchall()
        bands, delayed = [0] * len(PRIORITY_BANDS), 0
        for band, is_delayed, count in rows:
            if is_delayed:
                delayed += count
            else:
                bands[band] += count
        return QueueDepth(sum(bands) + delayed, delayed, tuple(bands))

    def dead_letters(self, queue: str | None = None, limit: int = 100) -> list[DeadLetter]:
        with self._errors:
            return dead.read_dead(self._conn, queue, limit)

    def requeue_dead(self, receipts: Collection[str] | None = None) -> int:
        with self._errors, transaction(self._conn):
            return dead.requeue_dead(self._conn, receipts)

    def delete_dead(self, receipts: Collection[str]) -> int:
        with self._errors:
            return dead.delete_dead(self._conn, receipts)

    def purge_dead(self, queue: str | None = None) -> int:
        with self._errors:
            return dead.purge_dead(self._conn, queue)

    def schedule_store(self) -> ScheduleStore:
        """Schedules in this file: a fire's record and its message in one transaction."""
        return SQLiteSchedules(self._conn, self._errors, None)

    def _close(self) -> None:
        self._conn.close()

    def _abandon(self) -> None:
        abandon(self._conn)
