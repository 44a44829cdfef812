"""The SQLite broker reads its own tables defensively: SQLite keeps whatever type a writer gives
a column, and another process with write access to the file may write anything. A malformed
row is dead-lettered with its reason; the rest of the queue keeps flowing."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from forkq.engines.contract import Consumer, ConsumerSession, outgoing
from forkq.engines.memory import MemoryBackend
from forkq.engines.sqlite.broker import SQLiteBroker
from forkq.engines.sqlite.session import SQLiteSession
from forkq.exceptions import BrokerError

C = Consumer("w", "w/0")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[SQLiteBroker]:
    broker = SQLiteBroker(f"sqlite:///{tmp_path}/q.sqlite3")
    yield broker
    broker.close()


RESULTS = MemoryBackend("memory://sqlite-malformed")


def session(broker: SQLiteBroker) -> ConsumerSession:
    return broker.consumer(C, RESULTS)


def next_due(broker: SQLiteBroker) -> float | None:
    own = session(broker)
    assert isinstance(own, SQLiteSession)
    return own._next_due(["q"])


def put(broker: SQLiteBroker, body: bytes, priority: int = 0, delay: float = 0.0) -> None:
    broker.publish([outgoing("q", body, priority, delay)])


def plant(broker: SQLiteBroker, sql: str, params: tuple[object, ...] = ()) -> None:
    """Write as another program would: its own connection, any SQL."""
    conn = sqlite3.connect(broker.path, isolation_level=None)
    conn.execute(sql, params)
    conn.close()


def insert_row(broker: SQLiteBroker, **columns: str) -> None:
    """A row of queue "q", every column well formed unless given as an SQL expression."""
    values = {"queue": "'q'", "priority": "0", "visible_at": "0", "body": "X'00'", **columns}
    plant(
        broker,
        f"INSERT INTO forkq_messages ({', '.join(values)}) VALUES ({', '.join(values.values())})",
    )


MALFORMED = [
    ({"body": "'text'"}, "body is TEXT, not BLOB"),
    ({"body": "CAST(X'ff00fe' AS TEXT)"}, "body is TEXT, not BLOB"),  # not even UTF-8
    ({"body": "9223372036854775807"}, "body is INTEGER, not BLOB"),  # bytes(n): 8 EiB
    ({"body": "99999999999999999999999"}, "body is REAL, not BLOB"),
    ({"priority": "'high'"}, "priority is TEXT, not INTEGER"),
    ({"priority": "CAST(X'ff' AS TEXT)"}, "priority is TEXT, not INTEGER"),
    ({"priority": "X'09'"}, "priority is BLOB, not INTEGER"),
    ({"priority": "1.5"}, "priority is REAL, not INTEGER"),
    ({"priority": "1e300"}, "priority is REAL, not INTEGER"),
    ({"priority": "10"}, "priority 10 is not 0-9"),
    ({"priority": "-9223372036854775808"}, "priority -9223372036854775808 is not 0-9"),
    ({"visible_at": "'soon'"}, "visible_at is TEXT, not REAL"),
    ({"visible_at": "X'00'"}, "visible_at is BLOB, not REAL"),
    ({"visible_at": "9e999"}, "visible_at Inf is after year 9999"),
    ({"visible_at": "1e300"}, "visible_at 1.0e+300 is after year 9999"),
    ({"deliveries": "'many'"}, "deliveries is TEXT, not INTEGER"),
    ({"deliveries": "2.5"}, "deliveries is REAL, not INTEGER"),
    ({"deliveries": "-7"}, "deliveries -7 is negative"),
]


@pytest.mark.parametrize(("columns", "reason"), MALFORMED, ids=[r for _, r in MALFORMED])
def test_a_malformed_row_is_dead_lettered_with_its_reason_and_the_queue_flows(
    broker: SQLiteBroker, columns: dict[str, str], reason: str
) -> None:
    put(broker, b"before")
    insert_row(broker, **columns)
    put(broker, b"after")
    got = session(broker).fetch(["q"], 10, 0)
    assert sorted(d.body for d in got) == [b"after", b"before"]
    [dead] = broker.dead_letters("q")
    assert dead.reason == f"malformed row: {reason}"
    assert dead.queue == "q"
    assert 0 <= dead.priority <= 9
    assert isinstance(dead.body, bytes)
    for delivery in got:
        session(broker).finish(delivery, None)
    assert broker.size("q") == 0


@pytest.mark.parametrize(("columns", "reason"), MALFORMED, ids=[r for _, r in MALFORMED])
def test_depth_counts_a_malformed_row_once(
    broker: SQLiteBroker, columns: dict[str, str], reason: str
) -> None:
    insert_row(broker, **columns)
    depth = broker.depth("q")
    assert depth.bands is not None and depth.delayed is not None
    assert depth.messages == 1 == sum(depth.bands) + depth.delayed, reason


def test_a_fetch_of_one_that_claims_only_junk_looks_again_at_once(broker: SQLiteBroker) -> None:
    put(broker, b"valid", priority=9)
    for _ in range(3):  # text sorts above every number: these come first
        insert_row(broker, priority="'first'")
    [delivery] = session(broker).fetch(["q"], 1, 0)
    assert delivery.body == b"valid"
    assert len(broker.dead_letters("q")) == 3


def test_an_idle_fetch_with_junk_waiting_is_not_broken_by_it(broker: SQLiteBroker) -> None:
    # The earliest due time of waiting rows decides how long an idle fetch sleeps: a text
    # visible_at (SQLite's MIN picks text over no row) must read as "look again now".
    put(broker, b"later", delay=3600)
    plant(
        broker,
        "INSERT INTO forkq_messages (queue, priority, visible_at, body, owner)"
        " VALUES ('q', 0, 'soon', X'00', NULL)",
    )
    assert next_due(broker) == 0.0
    assert session(broker).fetch(["q"], 5, 0.05) == []  # the junk row claimed and dead-lettered
    assert [d.reason for d in broker.dead_letters("q")] == [
        "malformed row: visible_at is TEXT, not REAL"
    ]
    due = next_due(broker)
    assert due is not None and due > 1e9  # only the delayed one is left


@pytest.mark.parametrize("lease", ["NULL", "'forever'", "X'00'", "9e999", "1e300"])
def test_a_hold_whose_lease_is_not_a_time_is_taken_back(broker: SQLiteBroker, lease: str) -> None:
    insert_row(broker, body="X'68656c64'", owner="'ghost/0'", worker="'ghost'", lease_until=lease)
    [delivery] = session(broker).fetch(["q"], 1, 0)
    assert delivery.body == b"held"


def test_dead_letters_and_their_requeue_survive_junk_dead_rows(broker: SQLiteBroker) -> None:
    plant(
        broker,
        "INSERT INTO forkq_dead (queue, priority, body, reason, failed_at, deliveries)"
        " VALUES (X'71', 'x', CAST(X'ff41' AS TEXT), CAST(X'fe' AS TEXT), 'then', 'y')",
    )
    plant(
        broker,
        "INSERT INTO forkq_dead (queue, priority, body, reason, failed_at, deliveries)"
        " VALUES (CAST(X'ff' AS TEXT), 99, 9223372036854775807, 42, 9e999, 0)",
    )
    first, second = broker.dead_letters()
    assert (first.queue, first.body, first.reason) == ("q", b"\xffA", "\ufffd")
    assert (first.failed_at, first.priority) == (0.0, 0)
    assert (second.queue, second.body, second.reason) == ("\ufffd", b"9223372036854775807", "42")
    assert (second.failed_at, second.priority) == (0.0, 0)
    assert broker.requeue_dead() == 2
    [delivery] = session(broker).fetch(["q"], 5, 0)  # the blob queue name came back as text
    assert delivery.body == b"\xffA"


def test_a_failed_burial_gives_back_everything_the_fetch_claimed(broker: SQLiteBroker) -> None:
    # AUTOINCREMENT refuses every insert once the largest id has been used: dead-lettering
    # fails. The valid row fetched beside the junk must not stay held by this consumer.
    plant(
        broker,
        "INSERT INTO forkq_dead (id, queue, priority, body, reason, failed_at, deliveries)"
        " VALUES (9223372036854775807, 'q', 0, X'', 'r', 0, 0)",
    )
    put(broker, b"valid")
    insert_row(broker, body="'text'")
    with pytest.raises(BrokerError):
        session(broker).fetch(["q"], 5, 0)
    held = broker._conn.execute(
        "SELECT COUNT(*) FROM forkq_messages WHERE owner IS NOT NULL OR deliveries != 0"
    ).fetchone()[0]
    assert held == 0


@pytest.mark.parametrize(
    ("state", "payload"),
    [("CAST(X'ff' AS TEXT)", "X'00'"), ("'SUCCESS'", "9223372036854775807"), ("7", "'text'")],
)
def test_a_junk_result_row_reads_as_bytes(tmp_path: Path, state: str, payload: str) -> None:
    # A child reads the stored result of a redelivered message: a junk row must not crash it.
    from forkq.engines.sqlite.results import SQLiteBackend

    backend = SQLiteBackend(f"sqlite:///{tmp_path}/r.sqlite3")
    conn = sqlite3.connect(backend.path, isolation_level=None)
    conn.execute(f"INSERT INTO forkq_results VALUES ('t', {state}, {payload}, 9e999)")
    conn.close()
    stored = backend.get("t")
    assert stored is not None
    assert isinstance(stored.state, str)
    assert isinstance(stored.payload, bytes) and len(stored.payload) < 100
    assert backend.get_many(["t", "missing"]) == [stored, None]  # a gathering reads it alike
    backend.close()
