"""The event store every result backend provides (the rules: forkq/engines/contract/events.py),
one suite run against each engine, as test_conformance.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest
import redis

from forkq.engines.contract import READ_MAX, ResultBackend
from forkq.engines.redis.client import client_from_url
from forkq.engines.redis.keys import events_key
from forkq.engines.registry import open_backend
from forkq.engines.sqlite.file import path_from_url
from forkq.events import TaskEvent, TaskEventKind, WorkerEvent, WorkerEventKind, decode, encode
from forkq.exceptions import BackendError, BackendUnavailable
from tests.conftest import engine_url
from tests.engines.test_conformance import BACKENDS

# How many events beyond `kept` a store may hold: Redis trims a stream by whole nodes (of at
# most 100 entries, stream-node-max-entries' default); the others exactly.
SLACK = {"redis": 100, "redis-cluster": 100, "sqlite": 0, "memory": 0}


@pytest.fixture(params=sorted(BACKENDS))
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend_url(engine: str, tmp_path: Path) -> Iterator[str]:
    yield from engine_url(engine, BACKENDS[engine](tmp_path))


@pytest.fixture
def backend(backend_url: str) -> Iterator[ResultBackend]:
    b = open_backend(backend_url)
    yield b
    b.close()


def bodies(n: int, start: int = 0) -> list[bytes]:
    return [b"event %d" % i for i in range(start, start + n)]


def read_all(backend: ResultBackend, after: str | None = None) -> list[tuple[str, bytes]]:
    page = backend.read_events(after, READ_MAX)
    return [(e.offset, e.body) for e in page.events]


def offset_key(engine: str, offset: str) -> tuple[int, ...]:
    """An offset as the engine orders them: a number, or a stream id's two numbers."""
    if engine.startswith("redis"):
        return tuple(int(part) for part in offset.split("-"))
    return (int(offset),)


def raw_writer(engine: str, url: str) -> Callable[[list[object]], None] | None:
    """Writes values as another program would, past forkq (None: no other program can)."""
    if engine == "sqlite":

        def insert(values: list[object]) -> None:
            with sqlite3.connect(path_from_url(url)) as conn:
                conn.executemany(
                    "INSERT INTO forkq_events (body) VALUES (?)", [(v,) for v in values]
                )

        return insert
    if engine.startswith("redis"):

        def xadd(values: list[object]) -> None:
            prefix = parse_qs(urlsplit(url).query)["prefix"][0]
            client = client_from_url(url)[0]
            for v in values:
                # A value not whole-number, bytes or text: an entry without a body field.
                fields = {"b": v} if isinstance(v, (bytes, str, int)) else {"x": "no body"}
                client.xadd(events_key(prefix), fields)  # type: ignore[arg-type]
            client.close()

        return xadd
    return None


class TestEvents:
    def test_an_empty_store_reads_nothing(self, backend: ResultBackend) -> None:
        assert backend.last_event_offset() is None
        page = backend.read_events(None, 10)
        assert page.events == () and page.next == ""

    def test_the_next_offset_of_an_empty_store_reads_from_the_start(
        self, backend: ResultBackend
    ) -> None:
        page = backend.read_events(None, 10)
        backend.add_events(bodies(2), 100)
        assert [e.body for e in backend.read_events(page.next, 10).events] == bodies(2)

    def test_events_read_back_in_order_with_increasing_offsets(
        self, backend: ResultBackend, engine: str
    ) -> None:
        backend.add_events(bodies(3), 100)
        backend.add_events(bodies(2, 3), 100)
        found = read_all(backend)
        assert [body for _, body in found] == bodies(5)
        keys = [offset_key(engine, offset) for offset, _ in found]
        assert keys == sorted(keys) and len(set(keys)) == 5
        assert backend.last_event_offset() == found[-1][0]

    def test_reading_from_an_offset_gives_only_what_came_after(
        self, backend: ResultBackend
    ) -> None:
        backend.add_events(bodies(4), 100)
        first = backend.read_events(None, 2)
        assert [e.body for e in first.events] == bodies(2)
        assert first.next == first.events[-1].offset
        rest = backend.read_events(first.next, 10)
        assert [e.body for e in rest.events] == bodies(2, 2)
        again = backend.read_events(rest.next, 10)
        assert again.events == () and again.next == rest.next  # caught up: the same offset

    def test_the_newest_kept_events_stay_within_the_cap(
        self, backend: ResultBackend, engine: str
    ) -> None:
        for start in range(0, 500, 50):
            backend.add_events(bodies(50, start), 10)
        found = read_all(backend)
        assert 10 <= len(found) <= 10 + SLACK[engine]
        assert [body for _, body in found] == bodies(len(found), 500 - len(found))

    def test_a_reader_behind_the_cap_gets_the_oldest_kept(
        self, backend: ResultBackend, engine: str
    ) -> None:
        backend.add_events(bodies(1), 10)
        behind = backend.read_events(None, 1).next
        for start in range(1, 500, 50):
            backend.add_events(bodies(50, start), 10)
        after_cap = read_all(backend, behind)
        assert after_cap == read_all(backend)  # no error, and from the oldest kept
        assert len(after_cap) <= 10 + SLACK[engine]

    def test_a_new_backend_object_reads_the_same_history(
        self, backend: ResultBackend, backend_url: str
    ) -> None:
        backend.add_events(bodies(3), 100)
        seen = backend.read_events(None, 2).next
        restarted = open_backend(backend_url)  # a monitor started again
        try:
            assert read_all(restarted) == read_all(backend)
            assert [body for _, body in read_all(restarted, seen)] == bodies(1, 2)
            restarted.add_events(bodies(1, 3), 100)
            assert [body for _, body in read_all(backend, seen)] == bodies(2, 2)
        finally:
            restarted.close()

    def test_events_round_trip_through_the_codec(self, backend: ResultBackend) -> None:
        task = TaskEvent(TaskEventKind.FAILED, "t1", "app.add", "default", 1.5, reason="boom")
        worker = WorkerEvent(WorkerEventKind.ONLINE, "w1", "host", 42, 1.0, ("default",), 4)
        backend.add_events([encode(task), encode(worker)], 100)
        assert [decode(body) for _, body in read_all(backend)] == [task, worker]

    @pytest.mark.parametrize(
        "offset",
        ["x", "-1", "1.5", "12345678901234567890123", "1-2-3", "²", "1 ", "(1-0", "1-"],
    )
    def test_a_malformed_offset_is_a_value_error_naming_the_form(
        self, backend: ResultBackend, offset: str
    ) -> None:
        backend.add_events(bodies(1), 10)
        with pytest.raises(ValueError, match="an event offset"):
            backend.read_events(offset, 10)

    def test_the_other_engines_offsets_are_refused(
        self, backend: ResultBackend, engine: str
    ) -> None:
        foreign = "5" if engine.startswith("redis") else "1733150000000-0"
        with pytest.raises(ValueError, match="an event offset"):
            backend.read_events(foreign, 10)

    @pytest.mark.parametrize("limit", [0, -1, READ_MAX + 1, True, 1.5])
    def test_a_bad_limit_is_refused(self, backend: ResultBackend, limit: object) -> None:
        with pytest.raises(ValueError, match="read at most"):
            backend.read_events(None, limit)  # type: ignore[arg-type]

    @pytest.mark.parametrize("kept", [0, -1, True, 1.5])
    def test_a_bad_cap_is_refused_before_anything_is_written(
        self, backend: ResultBackend, kept: object
    ) -> None:
        with pytest.raises(ValueError, match="events_kept"):
            backend.add_events(bodies(1), kept)  # type: ignore[arg-type]
        assert backend.last_event_offset() is None

    def test_adding_nothing_adds_nothing(self, backend: ResultBackend) -> None:
        backend.add_events([], 10)
        assert backend.last_event_offset() is None

    def test_hostile_bodies_read_back_as_bytes_that_decode_to_none(
        self, backend: ResultBackend, backend_url: str, engine: str
    ) -> None:
        backend.add_events([b"\xc1 not msgpack", encode_unknown_tag()], 100)
        write = raw_writer(engine, backend_url)
        if write is not None:
            write([b"\xff\x00", "text", 12345, 1.5])
        backend.add_events(bodies(1), 100)
        found = read_all(backend)
        assert len(found) == (2 if write is None else 6) + 1
        assert all(isinstance(body, bytes) for _, body in found)
        assert [decode(body) for _, body in found[:-1]] == [None] * (len(found) - 1)
        assert found[-1][1] == b"event 0"


def encode_unknown_tag() -> bytes:
    return msgspec.msgpack.encode({"type": "nope", "kind": "online"})


class TestRedisEventErrors:
    def test_a_key_of_another_type_is_a_backend_error(self, tmp_path: Path) -> None:
        for url in engine_url("redis", BACKENDS["redis"](tmp_path)):
            prefix = parse_qs(urlsplit(url).query)["prefix"][0]
            client = redis.Redis.from_url(url.split("?")[0])
            client.set(events_key(prefix), "not a stream")
            client.close()
            backend = open_backend(url)
            try:
                with pytest.raises(BackendError, match="WRONGTYPE"):
                    backend.read_events(None, 10)
                with pytest.raises(BackendError, match="WRONGTYPE"):
                    backend.add_events(bodies(1), 10)
            finally:
                backend.close()

    def test_no_server_is_backend_unavailable(self) -> None:
        backend = open_backend("redis://127.0.0.1:1/0")
        try:
            with pytest.raises(BackendUnavailable):
                backend.last_event_offset()
        finally:
            backend.close()
