"""Dead letters in the SQLite engine: the table `forkq_dead` and how letters are added, capped,
read and taken back.

    forkq_dead(id, queue, priority, body, reason, failed_at, deliveries)
    forkq_dead_counts(queue, letters)   kept by triggers on forkq_dead, so that capping a
                                        queue's letters never counts them

Adding a letter (`move_dead`, the one place) then deletes that queue's oldest beyond the caps
(`DeadLetterCaps`) through indexes: a bounded delete, not a scan. Every read casts columns,
since a row written by another program may hold any type.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection

from forkq.engines.contract import LAST_MOMENT, DeadLetter, DeadLetterCaps
from forkq.engines.sqlite.holds import row_id

TABLE = """
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

# Added to files made before the caps: ensure_schema runs it when forkq_dead_counts is
# missing, once per file. Every statement is idempotent, so two processes that both found it
# missing are harmless.
CAPS = """
CREATE INDEX IF NOT EXISTS forkq_dead_queue ON forkq_dead(queue);
CREATE INDEX IF NOT EXISTS forkq_dead_age ON forkq_dead(queue, failed_at);
CREATE TABLE IF NOT EXISTS forkq_dead_counts (queue PRIMARY KEY, letters INTEGER NOT NULL);
INSERT OR IGNORE INTO forkq_dead_counts SELECT queue, COUNT(*) FROM forkq_dead GROUP BY queue;
CREATE TRIGGER IF NOT EXISTS forkq_dead_added AFTER INSERT ON forkq_dead BEGIN
    INSERT INTO forkq_dead_counts VALUES (NEW.queue, 1)
        ON CONFLICT (queue) DO UPDATE SET letters = letters + 1;
END;
CREATE TRIGGER IF NOT EXISTS forkq_dead_removed AFTER DELETE ON forkq_dead BEGIN
    UPDATE forkq_dead_counts SET letters = letters - 1 WHERE queue = OLD.queue;
END;
"""

# Letters past the age cap deleted per letter added, at most: a backlog (a cap lowered, an
# old file) goes in steps, so that no single dead-lettering pays for all of it.
AGED_AT_ONCE = 1000

# A priority fit to store in the dead letters or to publish again: 0 when it is not one.
PRIORITY_OR_0 = (
    "CASE WHEN typeof(priority) = 'integer' AND priority BETWEEN 0 AND 9 THEN priority ELSE 0 END"
)


def move_dead(
    conn: sqlite3.Connection, caps: DeadLetterCaps, owner: str, moves: list[tuple[int, str, str]]
) -> None:
    """(id, queue, reason) of rows `owner` holds in forkq_messages, moved to the dead letters;
    then each queue's oldest beyond the caps go. A row `owner` no longer holds is left alone.
    Inside the caller's transaction."""
    now = time.time()
    moved = conn.executemany(
        f"""INSERT INTO forkq_dead (queue, priority, body, reason, failed_at, deliveries)
            SELECT queue, {PRIORITY_OR_0}, CAST(body AS BLOB), ?, ?, CAST(deliveries AS INTEGER)
            FROM forkq_messages WHERE id = ? AND owner = ?""",
        [(reason, now, msg_id, owner) for msg_id, _, reason in moves],
    ).rowcount
    conn.executemany(
        "DELETE FROM forkq_messages WHERE id = ? AND owner = ?",
        [(msg_id, owner) for msg_id, _, _ in moves],
    )
    if not moved:  # each hold was lost (another consumer took the message over)
        return
    for queue in {queue for _, queue, _ in moves}:
        _cap(conn, caps, queue, now)


def _cap(conn: sqlite3.Connection, caps: DeadLetterCaps, queue: str, now: float) -> None:
    if caps.max_count:  # the oldest by id, as many as the count is over
        conn.execute(
            """DELETE FROM forkq_dead WHERE id IN (
                SELECT id FROM forkq_dead WHERE queue = ?1 ORDER BY id
                LIMIT MAX(0, COALESCE(
                    (SELECT letters FROM forkq_dead_counts WHERE queue = ?1), 0) - ?2))""",
            (queue, caps.max_count),
        )
    if caps.max_age:
        conn.execute(
            """DELETE FROM forkq_dead WHERE id IN (
                SELECT id FROM forkq_dead WHERE queue = ? AND failed_at < ? LIMIT ?)""",
            (queue, now - caps.max_age, AGED_AT_ONCE),
        )


def read_dead(conn: sqlite3.Connection, queue: str | None, limit: int) -> list[DeadLetter]:
    where, params = ("WHERE queue = ?", (queue,)) if queue else ("", ())
    rows = conn.execute(
        f"""SELECT id, CAST(queue AS BLOB), CAST(body AS BLOB), CAST(reason AS BLOB),
                CASE WHEN failed_at BETWEEN 0 AND {LAST_MOMENT} THEN failed_at ELSE 0 END,
                {PRIORITY_OR_0}
            FROM forkq_dead {where} ORDER BY id LIMIT ?""",
        (*params, limit),
    ).fetchall()
    # Read as bytes and decoded here: a row written by another program may hold any type.
    return [DeadLetter(str(r[0]), _text(r[1]), r[2], _text(r[3]), float(r[4]), r[5]) for r in rows]


def requeue_dead(conn: sqlite3.Connection, receipts: Collection[str] | None) -> int:
    """Inside the caller's transaction."""
    where, params = _id_filter(receipts)
    moved = conn.execute(
        f"""INSERT INTO forkq_messages (queue, priority, visible_at, body)
            SELECT CAST(queue AS TEXT), {PRIORITY_OR_0}, ?, CAST(body AS BLOB)
            FROM forkq_dead {where}""",
        (time.time(), *params),
    ).rowcount
    conn.execute(f"DELETE FROM forkq_dead {where}", params)
    return moved


def delete_dead(conn: sqlite3.Connection, receipts: Collection[str]) -> int:
    where, params = _id_filter(receipts)
    return conn.execute(f"DELETE FROM forkq_dead {where}", params).rowcount


def purge_dead(conn: sqlite3.Connection, queue: str | None) -> int:
    where, params = ("WHERE queue = ?", (queue,)) if queue else ("", ())
    return conn.execute(f"DELETE FROM forkq_dead {where}", params).rowcount


def _text(raw: bytes) -> str:
    return raw.decode(errors="replace")


def _id_filter(receipts: Collection[str] | None) -> tuple[str, tuple[int, ...]]:
    if receipts is None:
        return "", ()
    ids = tuple(row_id(r) for r in receipts if _is_row_id(r))  # others name no row here
    return f"WHERE id IN ({','.join('?' * len(ids)) or 'NULL'})", ids


def _is_row_id(receipt: str) -> bool:
    """Whether a receipt can name a row: ASCII digits that fit SQLite's integers."""
    return receipt.isascii() and receipt.isdigit() and len(receipt) <= 18
