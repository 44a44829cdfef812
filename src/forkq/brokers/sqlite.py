"""The embedded SQLite broker: at-least-once delivery through leases, no server needed.

Schema (one table of messages, one of dead letters)::

    forkq_messages(id, queue, priority, visible_at, body, deliveries, owner, worker, lease_until)
        owner IS NULL      -> ready once visible_at <= now (countdown/eta sets visible_at)
        owner = consumer   -> held; deliveries was incremented when fetched
        lease_until        -> pushed forward by the owning worker's heartbeat; a lease that
                              runs out (the whole worker died) is taken back by any consumer
    forkq_dead(id, queue, priority, body, reason, failed_at, deliveries)

Fetching claims rows with one `UPDATE ... RETURNING`, so two consumers never hold the same
message. Waiting for work is a blocking inotify wait on the database's WAL (`ChangeWaiter`).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

from forkq.brokers.base import (
    Broker,
    Consumer,
    DeadLetter,
    Delivery,
    check_fetch_args,
    lease_ttl_from_url,
)
from forkq.exceptions import BrokerError
from forkq.sqlitefile import ChangeWaiter, abandon, driver_errors_as, open_database

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
CREATE TABLE IF NOT EXISTS forkq_dead (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL,
    body BLOB NOT NULL,
    reason TEXT NOT NULL,
    failed_at REAL NOT NULL,
    deliveries INTEGER NOT NULL
);
"""

_UNHOLD = "owner = NULL, worker = NULL, lease_until = NULL"


class SQLiteBroker(Broker):
    def __init__(self, url: str) -> None:
        self.lease_ttl = lease_ttl_from_url(url)
        self.path, self._conn = open_database(
            url, "forkq_messages", _SCHEMA, BrokerError, "sqlite broker"
        )
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
                deliveries = self._claim(consumer, queues, limit)
                if deliveries:
                    return deliveries
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

    def _claim(self, consumer: Consumer, queues: Sequence[str], limit: int) -> list[Delivery]:
        now = time.time()
        marks = ",".join("?" * len(queues))
        rows = self._conn.execute(
            f"""UPDATE forkq_messages
                SET owner = ?, worker = ?, lease_until = ?, deliveries = deliveries + 1
                WHERE id IN (
                    SELECT id FROM forkq_messages
                    WHERE owner IS NULL AND queue IN ({marks}) AND visible_at <= ?
                    ORDER BY priority DESC, visible_at, id LIMIT ?)
                RETURNING id, queue, body, deliveries, priority, visible_at""",
            (consumer.name, consumer.worker, now + self.lease_ttl, *queues, now, limit),
        ).fetchall()
        rows.sort(key=lambda r: (-r[4], r[5], r[0]))  # RETURNING order is unspecified
        return [Delivery(str(r[0]), r[1], bytes(r[2]), r[3]) for r in rows]

    def _next_due(self, queues: Sequence[str]) -> float | None:
        marks = ",".join("?" * len(queues))
        row = self._conn.execute(
            "SELECT MIN(visible_at) FROM forkq_messages"
            f" WHERE owner IS NULL AND queue IN ({marks})",
            tuple(queues),
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def _recover_expired_leases(self) -> None:
        now = time.time()
        if now < self._next_recovery:
            return
        self._next_recovery = now + self.lease_ttl / 4
        self._conn.execute(
            f"UPDATE forkq_messages SET {_UNHOLD} WHERE owner IS NOT NULL AND lease_until < ?",
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
            moved = self._conn.execute(
                """INSERT INTO forkq_dead (queue, priority, body, reason, failed_at, deliveries)
                   SELECT queue, priority, body, ?, ?, deliveries FROM forkq_messages
                   WHERE id = ? AND owner = ?""",
                (reason, time.time(), int(delivery.receipt), consumer.name),
            ).rowcount
            if moved:
                self._conn.execute(
                    "DELETE FROM forkq_messages WHERE id = ?", (int(delivery.receipt),)
                )

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

    def heartbeat(self, worker: str) -> None:
        with self._errors():
            self._conn.execute(
                "UPDATE forkq_messages SET lease_until = ? WHERE worker = ?",
                (time.time() + self.lease_ttl, worker),
            )

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
        where, params = ("WHERE queue = ?", (queue,)) if queue else ("", ())
        with self._errors():
            rows = self._conn.execute(
                f"SELECT id, queue, body, reason, failed_at, priority FROM forkq_dead {where} "
                "ORDER BY id LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [DeadLetter(str(r[0]), r[1], bytes(r[2]), r[3], r[4], r[5]) for r in rows]

    def requeue_dead(self, receipts: Collection[str] | None = None) -> int:
        where, params = _id_filter(receipts)
        with self._errors(), self._transaction():
            moved = self._conn.execute(
                f"""INSERT INTO forkq_messages (queue, priority, visible_at, body)
                    SELECT queue, priority, ?, body FROM forkq_dead {where}""",
                (time.time(), *params),
            ).rowcount
            self._conn.execute(f"DELETE FROM forkq_dead {where}", params)
        return moved

    def purge_dead(self, queue: str | None = None) -> int:
        where, params = ("WHERE queue = ?", (queue,)) if queue else ("", ())
        with self._errors():
            return self._conn.execute(f"DELETE FROM forkq_dead {where}", params).rowcount

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


def _id_filter(receipts: Collection[str] | None) -> tuple[str, tuple[int, ...]]:
    if receipts is None:
        return "", ()
    ids = tuple(int(r) for r in receipts)
    return f"WHERE id IN ({','.join('?' * len(ids)) or 'NULL'})", ids
