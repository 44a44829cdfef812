"""A result write fenced by the run that writes it (`ResultBackend.store`, `Fence`): a worker
cut off past its lease, whose task another worker took over and ran, must not overwrite the
newer run's record when its own write lands late; the same id sent again, and a write of no
run's (which a requeued dead letter follows), start afresh. One suite for every result
backend, as test_conformance.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from forkq.engines.contract import Fence, ResultBackend, ResultWrite, StoredResult, attempt_of
from forkq.engines.registry import open_backend
from forkq.states import RETRY, STARTED, SUCCESS
from tests.conftest import engine_url
from tests.engines.test_conformance import BACKENDS


def run(retries: int, deliveries: int, sending: str = "sent once") -> Fence:
    return Fence(sending, attempt_of(retries, deliveries))


FIRST, REDELIVERED, NEXT_TRY = run(0, 1), run(0, 2), run(1, 1)


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResultBackend]:
    for url in engine_url(request.param, BACKENDS[request.param](tmp_path)):
        b = open_backend(url)
        yield b
        b.close()


def test_attempts_grow_with_every_newer_run_of_a_task() -> None:
    runs = [(0, 1), (0, 2), (0, 3), (1, 1), (1, 5), (2, 1), (2**40, 1), (2**40, 2)]
    assert [attempt_of(*r) for r in runs] == sorted({attempt_of(*r) for r in runs})
    assert attempt_of(0, 1) == 1  # a task's first run
    assert attempt_of(2**40, 2) < 2**53  # exact in a double: Redis's Lua numbers


def test_a_stale_run_does_not_overwrite_the_record_of_a_newer_one(backend: ResultBackend) -> None:
    backend.store("t", SUCCESS, b"newer", 60, REDELIVERED)
    backend.store("t", SUCCESS, b"stale", 60, FIRST)  # the cut-off worker's, landing late
    assert backend.get("t") == StoredResult(SUCCESS, b"newer")
    backend.store_all([ResultWrite("t", SUCCESS, b"stale again", 60, FIRST)])
    assert backend.get("t") == StoredResult(SUCCESS, b"newer")
    backend.store("t", SUCCESS, b"newest", 60, run(0, 3))
    assert backend.get("t") == StoredResult(SUCCESS, b"newest")
    backend.store("t", SUCCESS, b"redelivered again", 60, REDELIVERED)
    assert backend.get("t") == StoredResult(SUCCESS, b"newest")


def test_a_stale_write_before_the_newer_one_is_overwritten_by_it(backend: ResultBackend) -> None:
    backend.store("t", SUCCESS, b"stale", 60, FIRST)
    backend.store("t", STARTED, b"", 60, REDELIVERED)  # the run that took it over starts
    assert backend.get("t") == StoredResult(STARTED, b"")
    backend.store("t", SUCCESS, b"newer", 60, REDELIVERED)  # the same run goes on writing
    assert backend.get("t") == StoredResult(SUCCESS, b"newer")


def test_a_later_try_fences_off_the_earlier_ones(backend: ResultBackend) -> None:
    backend.store("t", RETRY, b"first try", 60, FIRST)
    backend.store("t", SUCCESS, b"second try", 60, NEXT_TRY)
    backend.store("t", RETRY, b"first try, redelivered", 60, run(0, 7))
    assert backend.get("t") == StoredResult(SUCCESS, b"second try")


def test_a_write_of_no_run_is_always_written_and_forgets_the_fence(
    backend: ResultBackend,
) -> None:
    backend.store("t", SUCCESS, b"newer", 60, REDELIVERED)
    backend.store("t", "FAILURE", b"rejected: dead-lettered", 60)  # no run's
    assert backend.get("t") == StoredResult("FAILURE", b"rejected: dead-lettered")
    # The dead letter requeued: the same message, its starts counted anew, runs afresh.
    backend.store("t", SUCCESS, b"requeued", 60, FIRST)
    assert backend.get("t") == StoredResult(SUCCESS, b"requeued")


def test_the_same_id_sent_again_starts_afresh_and_stays_fenced_from_the_old(
    backend: ResultBackend,
) -> None:
    backend.store("t", SUCCESS, b"a retried run", 60, NEXT_TRY)
    again = run(0, 1, sending="sent again")
    backend.store("t", SUCCESS, b"sent again", 60, again)
    assert backend.get("t") == StoredResult(SUCCESS, b"sent again")
    backend.store("t", SUCCESS, b"a stale run of the first sending", 60, FIRST)
    assert backend.get("t") == StoredResult(SUCCESS, b"sent again")


def test_a_refused_write_wakes_no_waiter_and_a_forgotten_record_forgets_its_attempt(
    backend: ResultBackend,
) -> None:
    backend.store("t", STARTED, b"", 60, REDELIVERED)
    backend.store("t", SUCCESS, b"stale", 60, FIRST)
    assert backend.wait("t", 0.2) == StoredResult(STARTED, b"")  # not ready: timed out
    backend.forget("t")
    backend.store("t", SUCCESS, b"sent again", 60, FIRST)
    assert backend.get("t") == StoredResult(SUCCESS, b"sent again")


def test_several_writes_are_each_fenced_by_their_own_attempt(backend: ResultBackend) -> None:
    backend.store("a", SUCCESS, b"newer a", 60, REDELIVERED)
    backend.store_all(
        [
            ResultWrite("a", SUCCESS, b"stale a", 60, FIRST),
            ResultWrite("b", SUCCESS, b"b", 60, FIRST),
        ]
    )
    assert backend.get_many(["a", "b"]) == [
        StoredResult(SUCCESS, b"newer a"),
        StoredResult(SUCCESS, b"b"),
    ]


def test_a_sqlite_file_made_before_fencing_gets_its_fences_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.sqlite3"
    open_backend(url).close()
    with sqlite3.connect(tmp_path / "old.sqlite3") as conn:
        conn.execute("DROP TABLE forkq_fences")  # as a file an earlier forkq made
    backend = open_backend(url)
    try:
        backend.store("t", SUCCESS, b"newer", 60, REDELIVERED)
        backend.store("t", SUCCESS, b"stale", 60, FIRST)
        assert backend.get("t") == StoredResult(SUCCESS, b"newer")
    finally:
        backend.close()
