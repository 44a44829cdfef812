"""The rows of `forkq_messages`: how they are published, and what becomes of those a consumer
holds (`owner` = its name): acked (deleted), released (visible again), or taken back once
their lease runs out. Used by the consumer's own session and by the broker (publishing, and
for a consumer that is gone); the dead letters are `forkq.engines.sqlite.dead`'s.

A receipt is a row's id as text (`str(id)`): `row_id` is the one place that reads it back.
Every statement names the holder, so a row another consumer holds by now is left alone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from forkq.engines.contract import LAST_MOMENT, Outgoing

UNHOLD = "owner = NULL, worker = NULL, lease_until = NULL"


def row_id(receipt: str) -> int:
    """The id of the row a receipt (of a message or of a dead letter) names."""
    return int(receipt)


_PUBLISH = "INSERT INTO forkq_messages (queue, priority, visible_at, body) VALUES (?,?,?,?)"


def publish(conn: sqlite3.Connection, messages: Sequence[Outgoing], now: float) -> None:
    """Insert the messages, each visible `delay` seconds after `now` (in the caller's
    transaction when there are several)."""
    if len(messages) == 1:
        m = messages[0]
        conn.execute(_PUBLISH, (m.queue, m.priority, now + m.delay, m.body))
    elif messages:
        conn.executemany(_PUBLISH, [(m.queue, m.priority, now + m.delay, m.body) for m in messages])


_ACK = "DELETE FROM forkq_messages WHERE id = ? AND owner = ?"


def held(conn: sqlite3.Connection, owner: str, msg_id: int) -> bool:
    """Whether `owner` holds the row (its lease was not taken back)."""
    found = conn.execute("SELECT 1 FROM forkq_messages WHERE id = ? AND owner = ?", (msg_id, owner))
    return found.fetchone() is not None


def ack(conn: sqlite3.Connection, owner: str, msg_id: int) -> None:
    conn.execute(_ACK, (msg_id, owner))


def ack_all(conn: sqlite3.Connection, owner: str, ids: Iterable[int]) -> None:
    conn.executemany(_ACK, [(msg_id, owner) for msg_id in ids])


def requeue(conn: sqlite3.Connection, owner: str, msg_id: int, visible_at: float) -> None:
    """Back, visible at `visible_at`, its delivery not counted."""
    conn.execute(
        f"""UPDATE forkq_messages SET {UNHOLD}, visible_at = ?,
            deliveries = MAX(deliveries - 1, 0) WHERE id = ? AND owner = ?""",
        (visible_at, msg_id, owner),
    )


def release(conn: sqlite3.Connection, owner: str, running: Sequence[str]) -> int:
    """Give back every row `owner` holds; return how many. The receipts in `running` had
    started: their delivery count stands; the others' is taken back."""
    started = [row_id(r) for r in running]
    marks = ",".join("?" * len(started)) or "NULL"
    return conn.execute(
        f"""UPDATE forkq_messages SET {UNHOLD}, deliveries = CASE
                WHEN id IN ({marks}) THEN deliveries ELSE MAX(deliveries - 1, 0) END
            WHERE owner = ?""",
        (*started, owner),
    ).rowcount


def unclaim(conn: sqlite3.Connection, owner: str, ids: Sequence[int]) -> None:
    """Give back rows just claimed, as if the claim had not happened."""
    marks = ",".join("?" * len(ids))
    conn.execute(
        f"""UPDATE forkq_messages SET {UNHOLD}, deliveries = MAX(deliveries - 1, 0)
            WHERE id IN ({marks}) AND owner = ?""",
        (*ids, owner),
    )


def take_back_expired(conn: sqlite3.Connection, now: float) -> None:
    """Release every hold whose lease ran out (its worker stopped beating). A lease that is not
    a number up to year 9999 (text, a blob, NULL, inf) never runs out by itself: it is taken
    back as if it had."""
    conn.execute(
        f"""UPDATE forkq_messages SET {UNHOLD} WHERE owner IS NOT NULL
            AND (lease_until < ? OR lease_until > {LAST_MOMENT} OR lease_until IS NULL)""",
        (now,),
    )
