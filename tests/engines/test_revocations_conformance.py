"""Revoked task ids on every result backend (the rules: forkq/engines/contract/revocations.py),
one suite run against each engine, as test_conformance.py.

Where the behaviour under test is an expiry passing, the test sleeps for it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from forkq.engines.contract import REVOKED_MAX, ResultBackend, Revocations
from forkq.engines.memory import results as memory_results
from forkq.engines.redis import revocations as redis_revocations
from forkq.engines.registry import open_backend
from forkq.engines.sqlite import revocations as sqlite_revocations
from tests.conftest import engine_url
from tests.engines.test_conformance import BACKENDS


@pytest.fixture(params=sorted(BACKENDS))
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from engine_url(request.param, BACKENDS[request.param](tmp_path))


@pytest.fixture
def backend(backend_url: str) -> Iterator[ResultBackend]:
    b = open_backend(backend_url)
    yield b
    b.close()


def ids(found: Revocations) -> list[str]:
    return [r.task_id for r in found.revoked]


def new_ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


class TestRevocations:
    def test_nothing_revoked_reads_empty_at_cursor_0(self, backend: ResultBackend) -> None:
        assert backend.revocations() == Revocations((), 0)

    def test_revoked_ids_read_back_in_order_with_their_expiry(self, backend: ResultBackend) -> None:
        a, b = new_ids(2)
        before = time.time()
        backend.revoke([a, b], 60)
        found = backend.revocations()
        assert ids(found) == [a, b]
        assert found.cursor >= 2
        for r in found.revoked:
            assert before + 59 <= r.expires_at <= time.time() + 60

    def test_a_cursor_gives_only_what_changed_since(self, backend: ResultBackend) -> None:
        a, b, c = new_ids(3)
        backend.revoke([a, b], 60)
        first = backend.revocations()
        backend.revoke([c], 60)
        second = backend.revocations(first.cursor)
        assert ids(second) == [c] and second.cursor > first.cursor
        assert backend.revocations(second.cursor) == Revocations((), second.cursor, first.epoch)
        assert ids(backend.revocations()) == [a, b, c]

    def test_the_epoch_stays_while_the_sequence_does(self, backend: ResultBackend) -> None:
        backend.revoke(new_ids(1), 60)
        first = backend.revocations()
        backend.revoke(new_ids(2), 60)
        assert backend.revocations(first.cursor).epoch == first.epoch

    def test_other_connections_read_the_same_set(
        self, backend: ResultBackend, backend_url: str
    ) -> None:
        other = open_backend(backend_url)
        try:
            [a] = new_ids(1)
            other.revoke([a], 60)
            assert ids(backend.revocations()) == [a]
        finally:
            other.close()

    def test_revoking_again_renumbers_it_and_renews_its_expiry(
        self, backend: ResultBackend
    ) -> None:
        a, b = new_ids(2)
        backend.revoke([a], 1)
        backend.revoke([b], 60)
        seen = backend.revocations()
        backend.revoke([a], 120)
        again = backend.revocations(seen.cursor)
        assert ids(again) == [a] and again.revoked[0].expires_at > time.time() + 100
        assert ids(backend.revocations()) == [b, a]  # once, in its new place

    def test_an_expired_revocation_is_not_read(self, backend: ResultBackend) -> None:
        a, b = new_ids(2)
        backend.revoke([a], 0.3)
        backend.revoke([b], 60)
        assert ids(backend.revocations()) == [a, b]
        time.sleep(0.4)
        assert ids(backend.revocations()) == [b]

    def test_the_oldest_go_beyond_the_cap(
        self, backend: ResultBackend, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for module in (memory_results, sqlite_revocations, redis_revocations):
            monkeypatch.setattr(module, "REVOKED_MAX", 5)
        revoked = new_ids(8)
        backend.revoke(revoked[:6], 60)
        backend.revoke(revoked[6:], 60)
        assert ids(backend.revocations()) == revoked[3:]
        assert REVOKED_MAX == 50_000  # the constant itself, untouched

    def test_bad_ids_and_ttls_are_refused_before_anything_is_written(
        self, backend: ResultBackend
    ) -> None:
        [good] = new_ids(1)
        for task_ids, ttl in (
            ([good, ""], 60),
            ([good, "x" * 256], 60),
            ([good], 0),
            ([good], -1),
            ([good], float("nan")),
            ([good], float("inf")),
        ):
            with pytest.raises(ValueError):
                backend.revoke(task_ids, ttl)
        assert backend.revocations() == Revocations((), 0)

    def test_reads_from_a_cursor_miss_nothing_revoked_meanwhile(
        self, backend: ResultBackend, backend_url: str
    ) -> None:
        """Two writers revoke 200 ids while a reader follows its cursor: every id is read."""
        written = [new_ids(100), new_ids(100)]

        def write(batch: list[str]) -> None:
            own = open_backend(backend_url)
            try:
                for task_id in batch:
                    own.revoke([task_id], 60)
            finally:
                own.close()

        writers = [threading.Thread(target=write, args=(batch,)) for batch in written]
        for w in writers:
            w.start()
        seen: list[str] = []
        cursor = 0
        while any(w.is_alive() for w in writers) or len(seen) < 200:
            found = backend.revocations(cursor)
            seen += ids(found)
            cursor = found.cursor
            if not any(w.is_alive() for w in writers) and not found.revoked:
                break
        for w in writers:
            w.join(timeout=30)
        seen += ids(backend.revocations(cursor))
        assert sorted(seen) == sorted(written[0] + written[1])
