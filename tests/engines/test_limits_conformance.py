"""Rate and concurrency limits on every result backend (the rules:
forkq/engines/contract/limits.py), one suite run against each engine, as test_conformance.py.

Waits are read from what a take answers; where the behaviour under test is time passing (a
reservation coming due, a lease or a reservation expiring), the test sleeps for it.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from forkq.engines.contract import RATE_TOLERANCE, Backoff, ResultBackend
from forkq.engines.redis.client import client_from_url
from forkq.engines.registry import open_backend
from tests.conftest import engine_url
from tests.engines.test_conformance import BACKENDS

SLACK = 0.05  # seconds a wait may fall short of its slot: the time between two takes


@pytest.fixture(params=sorted(BACKENDS))
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from engine_url(request.param, BACKENDS[request.param](tmp_path))


@pytest.fixture
def backend(backend_url: str) -> Iterator[ResultBackend]:
    b = open_backend(backend_url)
    yield b
    b.close()


@pytest.fixture
def task() -> str:
    return f"proj.limited-{uuid.uuid4().hex[:8]}"


def near(wait: float, expected: float) -> bool:
    return expected - SLACK <= wait <= expected + RATE_TOLERANCE


class TestRate:
    def test_starts_are_spaced_by_the_interval(self, backend: ResultBackend, task: str) -> None:
        assert backend.take_rate(task, "", 0.5, "h0") == 0
        assert near(backend.take_rate(task, "", 0.5, "h1"), 0.5)
        assert near(backend.take_rate(task, "", 0.5, "h2"), 1.0)

    def test_a_backlog_gets_one_slot_each(
        self, backend: ResultBackend, backend_url: str, task: str
    ) -> None:
        """50 takes from 5 connections at once: 50 distinct slots, an interval apart."""
        waits: list[float] = []
        lock = threading.Lock()

        def take(first: int) -> None:
            own = open_backend(backend_url)
            try:
                for n in range(first, first + 10):
                    wait = own.take_rate(task, "", 0.1, f"h{n}")
                    with lock:
                        waits.append(wait)
            finally:
                own.close()

        threads = [threading.Thread(target=take, args=(n * 10,)) for n in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(waits) == 50
        waits.sort()
        assert waits[0] == 0 and waits[1] > 0
        gaps = [b - a for a, b in itertools.pairwise(waits[1:])]
        assert all(0.1 - SLACK <= gap <= 0.1 + SLACK for gap in gaps), gaps
        assert waits[-1] >= 4.9 - 1.0  # the last slot is about 4.9 s on (less the time taken)

    def test_a_holder_keeps_its_slot_and_takes_it_when_due(
        self, backend: ResultBackend, task: str
    ) -> None:
        assert backend.take_rate(task, "", 0.3, "h0") == 0
        first = backend.take_rate(task, "", 0.3, "h1")
        assert near(first, 0.3)
        again = backend.take_rate(task, "", 0.3, "h1")  # back early: the same slot
        assert 0 < again <= first
        assert near(backend.take_rate(task, "", 0.3, "h2"), 0.6)  # not h1's slot
        time.sleep(again)  # h1's slot comes due
        assert backend.take_rate(task, "", 0.3, "h1") == 0
        assert backend.take_rate(task, "", 0.3, "h1") > 0  # consumed: a new slot

    def test_late_reservations_do_not_start_together(
        self, backend: ResultBackend, task: str
    ) -> None:
        assert backend.take_rate(task, "", 0.2, "h0") == 0
        assert backend.take_rate(task, "", 0.2, "h1") > 0
        assert backend.take_rate(task, "", 0.2, "h2") > 0
        time.sleep(0.5)  # both slots pass while their holders are away
        assert backend.take_rate(task, "", 0.2, "h1") == 0
        assert near(backend.take_rate(task, "", 0.2, "h2"), 0.2)  # a new slot, after h1
        assert near(backend.take_rate(task, "", 0.2, "h3"), 0.4)  # a newcomer: the next

    def test_an_override_sets_the_interval_of_every_bucket(
        self, backend: ResultBackend, task: str
    ) -> None:
        assert backend.rate_override(task) is None
        backend.set_rate_override(task, 1.0)
        assert backend.rate_override(task) == 1.0
        for key in ("", "user-1"):
            assert backend.take_rate(task, key, 0.01, "h0") == 0
            assert near(backend.take_rate(task, key, 0.01, "h1"), 1.0)
        other = f"{task}-other"
        assert backend.take_rate(other, "", 0.01, "h0") == 0
        assert backend.take_rate(other, "", 0.01, "h1") <= 0.01  # its own interval
        backend.set_rate_override(task, None)
        assert backend.rate_override(task) is None
        assert backend.take_rate(task, "user-2", 0.01, "h0") == 0
        assert backend.take_rate(task, "user-2", 0.01, "h1") <= 0.01

    def test_a_reservation_expires(self, backend: ResultBackend, task: str) -> None:
        assert backend.take_rate(task, "", 0.2, "h0", keep=0.05) == 0
        assert near(backend.take_rate(task, "", 0.2, "h1", keep=0.05), 0.2)
        time.sleep(0.3)  # past h1's slot and the 50 ms it was kept
        # h1 is a newcomer: the next free slot, 0.4 s after h0's start, not its old one.
        assert near(backend.take_rate(task, "", 0.2, "h1", keep=0.05), 0.1)

    def test_buckets_are_independent(self, backend: ResultBackend, task: str) -> None:
        for key in ("a", "b", ""):
            assert backend.take_rate(task, key, 10, "h0") == 0
        assert backend.take_rate(f"{task}-2", "a", 10, "h0") == 0
        assert backend.take_rate(task, "a", 10, "h1") > 9

    def test_a_bad_interval_is_refused(self, backend: ResultBackend, task: str) -> None:
        for interval in (0, -1, float("inf"), float("nan")):
            with pytest.raises(ValueError):
                backend.take_rate(task, "", interval, "h0")
            with pytest.raises(ValueError):
                backend.set_rate_override(task, interval)


QUICK = Backoff(first=0.1, most=0.4, kept=60)


class TestSlots:
    def test_at_most_limit_holders(self, backend: ResultBackend, task: str) -> None:
        assert backend.take_slot(task, "", "h1", 2, 60) == 0
        assert backend.take_slot(task, "", "h2", 2, 60) == 0
        assert backend.take_slot(task, "", "h3", 2, 60) > 0
        backend.release_slot(task, "", "h1")
        assert backend.take_slot(task, "", "h3", 2, 60) == 0
        assert backend.take_slot(task, "", "h1", 2, 60) > 0

    def test_taking_is_reentrant(self, backend: ResultBackend, task: str) -> None:
        assert backend.take_slot(task, "", "h1", 1, 60) == 0
        assert backend.take_slot(task, "", "h1", 1, 60) == 0  # a redelivery: its own slot
        assert backend.take_slot(task, "", "h2", 1, 60) > 0

    def test_releasing_a_slot_not_held_changes_nothing(
        self, backend: ResultBackend, task: str
    ) -> None:
        assert backend.take_slot(task, "", "h1", 1, 60) == 0
        backend.release_slot(task, "", "h2")
        backend.release_slot(task, "other", "h1")
        assert backend.take_slot(task, "", "h2", 1, 60) > 0

    def test_a_lease_expires(self, backend: ResultBackend, task: str) -> None:
        assert backend.take_slot(task, "", "h1", 2, 0.1) == 0
        assert backend.take_slot(task, "", "h2", 2, 60) == 0
        assert backend.take_slot(task, "", "h3", 2, 60) > 0
        time.sleep(0.2)  # h1's lease runs out: its holder died, say
        assert backend.take_slot(task, "", "h3", 2, 60) == 0
        assert backend.take_slot(task, "", "h4", 2, 60) > 0  # h2's lease still holds

    def test_the_back_off_doubles_up_to_its_most_and_starts_over_once_taken(
        self, backend: ResultBackend, task: str
    ) -> None:
        assert backend.take_slot(task, "", "h1", 1, 60, QUICK) == 0
        waits = [backend.take_slot(task, "", "h2", 1, 60, QUICK) for _ in range(5)]
        for wait, base in zip(waits, (0.1, 0.2, 0.4, 0.4, 0.4), strict=True):
            assert base / 2 - 1e-6 <= wait <= base + 1e-6, waits
        assert 0.05 - 1e-6 <= backend.take_slot(task, "", "h3", 1, 60, QUICK) <= 0.1  # its own
        backend.release_slot(task, "", "h1")
        assert backend.take_slot(task, "", "h2", 1, 60, QUICK) == 0
        backend.release_slot(task, "", "h2")
        assert backend.take_slot(task, "", "h1", 1, 60, QUICK) == 0
        assert backend.take_slot(task, "", "h2", 1, 60, QUICK) <= 0.1  # from the first again

    def test_buckets_are_independent(self, backend: ResultBackend, task: str) -> None:
        assert backend.take_slot(task, "a", "h1", 1, 60) == 0
        assert backend.take_slot(task, "b", "h2", 1, 60) == 0
        assert backend.take_slot(f"{task}-2", "a", "h3", 1, 60) == 0
        assert backend.take_slot(task, "a", "h4", 1, 60) > 0

    def test_slots_are_counted_across_connections(
        self, backend: ResultBackend, backend_url: str, task: str
    ) -> None:
        """20 holders take from 4 connections at once: exactly 3 get a slot."""
        taken: list[str] = []
        lock = threading.Lock()

        def take(first: int) -> None:
            own = open_backend(backend_url)
            try:
                for n in range(first, first + 5):
                    if own.take_slot(task, "", f"h{n}", 3, 60) == 0:
                        with lock:
                            taken.append(f"h{n}")
            finally:
                own.close()

        threads = [threading.Thread(target=take, args=(n * 5,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(taken) == 3


def write_junk(backend_url: str, task: str) -> None:
    """What anyone with access could write where the limits of `task` are kept."""
    if backend_url.startswith("redis"):
        client = client_from_url(backend_url)[0]
        prefix = backend_url.split("prefix=")[1].split("&")[0]
        tag, slots = f"{{{prefix}:rate:{task}}}", f"{{{prefix}:slots:{task}}}"
        client.set(f"{tag}:override", "0x10")
        client.hset(f"{tag}:bucket:", mapping={"tat": "nan", "last": "-5"})
        client.set(f"{tag}:held:h1:", "soon")
        client.set(f"{slots}:backoff:h9:", "0")
        client.close()
    else:
        path = backend_url.removeprefix("sqlite:///").split("?")[0]
        conn = sqlite3.connect(path)
        with conn:
            conn.execute("INSERT INTO forkq_rate_overrides VALUES (?, 'fast')", (task,))
            conn.execute("INSERT INTO forkq_rates VALUES (?, '', X'00', 'x', 1e300)", (task,))
            conn.execute(
                "INSERT INTO forkq_rate_holds VALUES (?, '', 'h1', 'soon', 1e300)", (task,)
            )
            conn.execute(
                "INSERT INTO forkq_slot_backoffs VALUES (?, '', 'h9', 'no', 1e300)", (task,)
            )
        conn.close()


def test_junk_where_limits_are_kept_reads_as_nothing(
    backend: ResultBackend, backend_url: str, task: str
) -> None:
    if backend_url.startswith("memory"):
        pytest.skip("nothing outside the process can write there")
    backend.take_slot(task, "", "h0", 1, 60)  # the tables made, the slot held
    write_junk(backend_url, task)
    assert backend.rate_override(task) is None
    assert backend.take_rate(task, "", 0.5, "h1") == 0  # no override, schedule, reservation
    assert near(backend.take_rate(task, "", 0.5, "h2"), 0.5)
    assert 0.05 - 1e-6 <= backend.take_slot(task, "", "h9", 1, 60) <= 0.1  # a first back-off
