"""A consumer of the SQLite broker: how it fetches, and how it settles what it holds.

fetch (`contract.fetch_until`):
    every lease_ttl / 4      take back the holds whose lease ran out (`holds.take_back_expired`)
    claim                    one `UPDATE ... RETURNING` holds the best visible rows for this
                             consumer, so two consumers never hold the same message
    nothing visible          wait on the database's WAL (`ChangeWaiter`) for a commit, the
                             next delayed message or the next recovery, whichever comes first
settle, each naming this consumer as the holder (a row held by another by now is left alone):
    finish                   the result stored through `results`, then the row deleted; with
                             effects, when `results` is a SQLiteBackend on this file
                             (`atomic_effects`): the writes, the chord vote, the messages
                             published (the chord's too when the vote fires) and the row
                             deleted, in one transaction on this connection (`records`)
    requeue / release        the row visible again (`holds`)
    dead_letter              the row moved to the dead letters (`dead.move_dead`)

SQLite keeps whatever type a writer gives a column, so the claim checks types in SQL before
Python sees a value: a claimed row that is malformed (see `_MALFORMED`) goes to the dead
letters with the reason, in a second statement run only when there is one.

No ack is kept back (`keeps_acks` is False): an ack is one statement on a local file, with no
round trip to save. The session shares its broker's connection (one per process).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

from forkq.engines.contract import (
    LAST_MOMENT,
    Capabilities,
    Claimed,
    Consumer,
    ConsumerSession,
    DeadLetterCaps,
    Delivery,
    Effects,
    RecoveryClock,
    ResultBackend,
    ResultWrite,
    fetch_until,
)
from forkq.engines.sqlite import dead, holds
from forkq.engines.sqlite.file import ChangeWaiter, driver_errors_as, transaction
from forkq.engines.sqlite.records import Records
from forkq.engines.sqlite.results import SQLiteBackend
from forkq.exceptions import BrokerError

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


class SQLiteSession(ConsumerSession):
    def __init__(
        self,
        consumer: Consumer,
        results: ResultBackend,
        capabilities: Capabilities,
        conn: sqlite3.Connection,
        path: str,
        lease_ttl: float,
        dead_caps: DeadLetterCaps,
    ) -> None:
        super().__init__(consumer, results, capabilities)
        self._conn = conn
        self._path = path
        self._errors = driver_errors_as(BrokerError, f"sqlite broker {path}")
        self._lease_ttl = lease_ttl
        self._dead_caps = dead_caps
        self._clock = RecoveryClock(lease_ttl)
        self.unchallenged_for = lease_ttl / 2
        self._waiter: ChangeWaiter | None = None  # made when a fetch first has to wait
        # The result backend's statements on this connection, if the results are in this file.
        self._records: Records | None = None
        if isinstance(results, SQLiteBackend) and _same_file(results.path, path):
            self._records = Records(conn, time.time())
        self.atomic_effects = self._records is not None

    # -- fetching ----------------------------------------------------------------------------

    def _fetch(
        self, acks: list[Delivery], queues: Sequence[str], limit: int, timeout: float
    ) -> list[Delivery]:
        with self._errors:
            self._ack_all(acks)
            return fetch_until(
                timeout, self._clock, self._recover, lambda: self._claim(queues, limit), self._wait
            )

    def _recover(self) -> None:
        holds.take_back_expired(self._conn, time.time())

    def _claim(self, queues: Sequence[str], limit: int) -> Claimed:
        """Hold the best visible rows; the well-formed ones are delivered, the others
        dead-lettered. A row due after year 9999 or with a visible_at that is not a number
        counts as visible, so that it is claimed and dead-lettered, not kept forever. The
        casts keep junk in a malformed row from reaching Python's decoders."""
        if self._waiter is not None:
            self._waiter.arm()  # before the look: a commit after it still wakes the wait
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
            (self.consumer.name, self.consumer.worker, now + self._lease_ttl, *queues, now, limit),
        ).fetchall()
        good = [r for r in rows if r[6] is None]
        if len(good) < len(rows):
            self._bury([r for r in rows if r[6] is not None], [r[0] for r in rows])
        good.sort(key=lambda r: (-r[4], r[5], r[0]))  # RETURNING order is unspecified
        got = [Delivery(str(r[0]), r[1], r[2], r[3]) for r in good]
        if rows:
            return Claimed(got, again=not got)  # only malformed rows came: look again at once
        return Claimed(got, self._next_due(queues))

    def _bury(self, malformed: list[Any], claimed: list[int]) -> None:
        """Move malformed claimed rows to the dead letters, each column made fit to read.
        If that fails, everything this fetch claimed goes back before the error is raised."""
        try:
            with transaction(self._conn):
                moves = [(r[0], r[1], f"malformed row: {r[6]}") for r in malformed]
                dead.move_dead(self._conn, self._dead_caps, self.consumer.name, moves)
        except sqlite3.Error:
            with suppress(sqlite3.Error):
                holds.unclaim(self._conn, self.consumer.name, claimed)
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

    def _wait(self, seconds: float) -> list[Delivery]:
        if self._waiter is None:
            # Made only once a fetch has to wait, then looked again before waiting: a child
            # with work queued never pays for an inotify watch (~5 ms to close).
            self._waiter = ChangeWaiter(self._path)
        else:
            self._waiter.wait(seconds)
        return []  # a change wakes the wait; the claim that follows takes what came

    # -- settling ----------------------------------------------------------------------------

    def _send_acks(self, acks: list[Delivery]) -> None:
        with self._errors:
            self._ack_all(acks)

    def _ack_all(self, acks: list[Delivery]) -> None:
        if acks:
            ids = [holds.row_id(d.receipt) for d in acks]
            holds.ack_all(self._conn, self.consumer.name, ids)

    def _still_holds(self, delivery: Delivery) -> bool:
        with self._errors:
            return holds.held(self._conn, self.consumer.name, holds.row_id(delivery.receipt))

    def _ack_finished(self, acks: list[Delivery], delivery: Delivery) -> None:
        with self._errors:
            self._ack_all(acks)
            holds.ack(self._conn, self.consumer.name, holds.row_id(delivery.receipt))

    def _finish_atomically(
        self,
        acks: list[Delivery],
        delivery: Delivery,
        writes: tuple[ResultWrite, ...],
        effects: Effects,
    ) -> None:
        """One transaction: the kept acks, the writes, the vote, the messages (the vote's
        `then` when it fires, marked done at once), the ack. A vote that fired has committed
        with its messages and its done mark, so no redelivery publishes them again."""
        records = self._records
        assert records is not None  # atomic_effects says so
        vote, publish, now = effects.vote, effects.publish, time.time()
        with self._errors:
            if vote is not None:
                records.make_chord_tables()
            with transaction(self._conn):
                self._ack_all(acks)
                records.store(writes, now)
                if vote is not None and records.vote(vote, now):
                    publish = (*publish, *vote.then)
                    records.fired(vote)
                holds.publish(self._conn, publish, now)
                holds.ack(self._conn, self.consumer.name, holds.row_id(delivery.receipt))

    def _requeue(self, acks: list[Delivery], delivery: Delivery, delay: float) -> None:
        msg_id, visible_at = holds.row_id(delivery.receipt), time.time() + max(0.0, delay)
        with self._errors:
            self._ack_all(acks)
            holds.requeue(self._conn, self.consumer.name, msg_id, visible_at)

    def _dead_letter(self, acks: list[Delivery], delivery: Delivery, reason: str) -> None:
        moves = [(holds.row_id(delivery.receipt), delivery.queue, reason)]
        with self._errors, transaction(self._conn):
            self._ack_all(acks)
            dead.move_dead(self._conn, self._dead_caps, self.consumer.name, moves)

    def _release(self, acks: list[Delivery], running: Sequence[str]) -> int:
        with self._errors:
            self._ack_all(acks)
            return holds.release(self._conn, self.consumer.name, running)

    def _close(self, acks: list[Delivery]) -> None:
        try:
            self._send_acks(acks)
        finally:
            if self._waiter is not None:
                self._waiter.close()
                self._waiter = None


def _same_file(one: str, other: str) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:
        return False
