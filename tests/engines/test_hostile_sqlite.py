"""Rows of any type written straight into the SQLite broker's table, among valid tasks, on one
real running worker: every valid task completes, every bad row of the worker's queue ends in
the dead letters with a reason, no child dies, nothing is left behind.

BLOB bodies include tasks nested too deeply to decode."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from forkq import Forkq
from forkq.engines.sqlite.file import ChangeWaiter, path_from_url
from tests.bodies import TOO_DEEP, nested_too_deeply
from tests.conftest import WorkerProcess, wait_until_serving, with_param

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)

# A column value as SQL: (expression, parameters). Parameters cover what Python binds (ints,
# floats with NaN and inf, str, bytes); expressions cover what it cannot: integers past 64
# bits (SQLite reads them as REAL) and text that is not UTF-8.
Value = tuple[str, tuple[Any, ...]]


def bound(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Value]:
    return values.map(lambda v: ("?", (v,)))


HUGE = st.integers(min_value=2**63, max_value=10**40).map(lambda n: (str(n), ()))
NOT_UTF8 = st.sampled_from([b"\xff", b"\xc3\x28", b"a\x80b", b"\xed\xa0\x80"]).map(
    lambda raw: ("CAST(? AS TEXT)", (raw,))
)
ANY_TYPE = st.one_of(
    bound(INT64),
    bound(st.floats()),  # NaN included: SQLite stores it as NULL, which the table refuses
    bound(st.text(max_size=20)),
    bound(st.binary(max_size=20)),
    HUGE,
    NOT_UTF8,
)


def due_now_or_absurd(now: float) -> st.SearchStrategy[Value]:
    """A visible_at: junk, or a number due already or after year 9999 (a number between the
    two is a message delayed on purpose, which would rightly wait)."""
    numbers = st.floats().filter(lambda x: not (now < x <= 253402300799.0))
    return st.one_of(bound(numbers), bound(st.text(max_size=10)), bound(st.binary()), HUGE)


QUEUE = "default"
FOREIGN_QUEUES = st.one_of(  # names no consumer of "default" reads
    bound(st.just(QUEUE.encode())),
    bound(st.just(QUEUE + "\x00")),
    st.just(("CAST(? AS TEXT)", (QUEUE.encode() + b"\xff",))),
)


BLOBS = st.one_of(
    st.binary(max_size=40),
    st.integers(TOO_DEEP, 40_000).map(lambda depth: nested_too_deeply("deep", QUEUE, depth)),
)


@st.composite
def bad_row(draw: st.DrawFn, now: float) -> dict[str, Value]:
    """A row of the worker's queue (sometimes of a junk queue name): its body a BLOB that is no
    message, or a few of its columns of any type or value."""
    junk = draw(st.sets(st.sampled_from(["priority", "visible_at", "body", "deliveries"])))
    row: dict[str, Value] = {
        "queue": draw(FOREIGN_QUEUES) if draw(st.integers(0, 5)) == 0 else ("?", (QUEUE,)),
        "priority": draw(ANY_TYPE if "priority" in junk else bound(st.integers(0, 9))),
        "visible_at": draw(due_now_or_absurd(now) if "visible_at" in junk else bound(st.just(0))),
        "body": draw(ANY_TYPE if "body" in junk else bound(BLOBS)),
        "deliveries": draw(ANY_TYPE if "deliveries" in junk else bound(st.integers(0, 2))),
    }
    if draw(st.booleans()):  # not up to 2**63-1: AUTOINCREMENT then refuses every later insert
        row["id"] = draw(bound(st.integers(min_value=-(2**63), max_value=2**62)))
    if draw(st.integers(0, 3)) == 0:  # held by a worker that is gone, its lease junk or over
        row["owner"] = ("?", ("ghost/0",))  # (a lease still running would rightly be kept)
        row["lease_until"] = draw(st.one_of(st.just(("NULL", ())), due_now_or_absurd(now)))
    return row


def insert(conn: sqlite3.Connection, row: dict[str, Value]) -> bool:
    """False when the table refuses the row (NULL from NaN, an id already taken)."""
    columns, values = ", ".join(row), ", ".join(expr for expr, _ in row.values())
    sql = f"INSERT INTO forkq_messages ({columns}) VALUES ({values})"
    try:
        conn.execute(sql, tuple(p for _, params in row.values() for p in params))
    except sqlite3.IntegrityError:
        return False
    return True


def count(conn: sqlite3.Connection, sql: str) -> int:
    return int(conn.execute(sql).fetchone()[0])


def wait_for(path: str, condition: Callable[[], bool], timeout: float) -> bool:
    """Wake on each commit to the database (no polling) until `condition` holds."""
    waiter = ChangeWaiter(path)
    deadline = time.monotonic() + timeout
    try:
        while True:
            waiter.arm()
            if condition():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            waiter.wait(remaining)
    finally:
        waiter.close()


@pytest.fixture
def broker_url(sqlite_url: str) -> str:
    # Holds of a gone worker come back after 2 s, looked for every 0.5 s.
    return with_param(sqlite_url, "lease_ttl", "2")


@pytest.mark.slow
def test_hostile_rows_among_valid_tasks_are_dead_lettered_and_the_queue_flows(
    client: Forkq, start_worker: Callable[..., WorkerProcess], sqlite_url: str
) -> None:
    worker = start_worker("-c", "4")
    wait_until_serving(client, worker)
    children = worker.all_children(4)
    path = path_from_url(sqlite_url)
    conn = sqlite3.connect(path, isolation_level=None)
    dead_sql = "SELECT COUNT(*) FROM forkq_dead"
    foreign_sql = (
        f"SELECT COUNT(*) FROM forkq_messages WHERE typeof(queue) != 'text' OR queue != '{QUEUE}'"
    )
    written = 0  # bad rows of the worker's queue, over all examples

    now = time.time()  # fixed: a strategy must draw the same values when hypothesis replays it

    # Not shrunk: the examples share one worker and one file, so a later example does not run
    # on what an earlier one found; the first failure is reported as it was drawn.
    @settings(
        max_examples=15,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def example(data: st.DataObject) -> None:
        rows = data.draw(st.lists(bad_row(now), min_size=4, max_size=16))
        tasks = data.draw(st.lists(st.integers(0, 999), min_size=4, max_size=16))
        plan: list[int | dict[str, Value]] = data.draw(st.permutations([*rows, *tasks]))
        dead_before, foreign_before = count(conn, dead_sql), count(conn, foreign_sql)
        results, bad, foreign = [], 0, 0
        for step in plan:
            if isinstance(step, int):
                results.append((step, client.send_task("e2eapp.add", args=[step, 1])))
            elif insert(conn, step):
                if step["queue"] == ("?", (QUEUE,)):
                    bad += 1
                else:
                    foreign += 1
        for n, result in results:
            assert result.get(timeout=20) == n + 1
        assert wait_for(
            path,
            lambda: client.broker.size(QUEUE) == 0 and count(conn, dead_sql) >= dead_before + bad,
            timeout=30,
        ), (client.broker.size(QUEUE), bad, worker.log()[-3000:])
        assert count(conn, dead_sql) == dead_before + bad
        reasons = conn.execute(
            "SELECT reason FROM forkq_dead ORDER BY id DESC LIMIT ?", (bad,)
        ).fetchall()
        assert all(isinstance(r, str) and r for (r,) in reasons), reasons
        assert count(conn, foreign_sql) == foreign_before + foreign  # no consumer's: left be
        nonlocal written
        written += bad

    example()
    assert written > 20  # the examples did write junk
    conn.close()
    log = worker.log()
    assert worker.proc.poll() is None, log
    assert sorted(worker.children()) == children, log
    for sign in ("released", "Traceback", "unreachable"):
        assert sign not in log, log
