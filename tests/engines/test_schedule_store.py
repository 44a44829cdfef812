"""One conformance suite for where periodic schedules keep their lease and records
(`ScheduleStore`), on every engine: the broker's own store (memory, SQLite, Redis: a fire's
record and message at once) and, for RabbitMQ, its result backend's (SQLite or Redis: recorded,
then published). Real servers; each test has a prefix, vhost queues or file of its own."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from forkq.engines.contract import (
    Broker,
    Consumer,
    Fire,
    Outgoing,
    ResultBackend,
    ScheduleStore,
    outgoing,
    schedule_store,
)
from forkq.engines.registry import open_backend, open_broker
from forkq.exceptions import BrokerUnavailable
from tests.conftest import amqp_test_url, engine_url, redis_test_url
from tests.redis_cluster import cluster_test_url

# name -> (broker URL, result backend URL), from the test's directory
ENGINES: dict[str, Callable[[Path], tuple[str, str]]] = {
    "memory": lambda tmp: (f"memory://{uuid.uuid4().hex}",) * 2,
    "sqlite": lambda tmp: (f"sqlite:///{tmp}/s.sqlite3",) * 2,
    "redis": lambda tmp: (redis_test_url(),) * 2,
    "redis-cluster": lambda tmp: (cluster_test_url(),) * 2,
    "amqp+sqlite": lambda tmp: (amqp_test_url(), f"sqlite:///{tmp}/results.sqlite3"),
    "amqp+redis": lambda tmp: (amqp_test_url(), redis_test_url()),
}
# The result backends that keep schedules for a broker that cannot (RabbitMQ)
BACKENDS = {k: ENGINES[k] for k in ("memory", "sqlite", "redis", "redis-cluster")}
Q = "periodic"
LEASE = "scheduler:conformance"
RESULTS = open_backend("memory://schedule-conformance-results")


class Opened:
    """A broker, its result backend and their schedule store, closed together."""

    def __init__(self, urls: tuple[str, str]) -> None:
        self.urls = urls
        self.broker: Broker = open_broker(urls[0])
        self.backend: ResultBackend = open_backend(urls[1])
        self.store: ScheduleStore = schedule_store(self.broker, self.backend)

    def again(self) -> Opened:
        """The same engine on connections of its own (another scheduler)."""
        return Opened(self.urls)

    def fetched(self, wait: float = 0.5) -> list[bytes]:
        """The bodies waiting in Q, taken and acked (waiting up to `wait` for a first one)."""
        session = self.broker.consumer(Consumer("w", f"w/{uuid.uuid4().hex}"), RESULTS)
        taken = []
        while batch := session.fetch([Q], 100, wait if not taken else 0.2):
            for delivery in batch:
                session.finish(delivery, None)
            taken += [d.body for d in batch]
        session.release()  # what RabbitMQ pushed to it meanwhile goes back for the next look
        session.close()
        return taken

    def close(self) -> None:
        self.broker.close()
        self.backend.close()


def _urls(
    request: pytest.FixtureRequest, tmp: Path, table: dict[str, Callable[[Path], tuple[str, str]]]
) -> Iterator[tuple[str, str]]:
    broker, backend = table[request.param](tmp)
    for _ in engine_url(request.param.split("+")[0], broker):
        if backend == broker:
            yield broker, backend
            continue
        for _ in engine_url(request.param.split("+")[1], backend):
            yield broker, backend


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opened]:
    for urls in _urls(request, tmp_path, ENGINES):
        opened = Opened(urls)
        yield opened
        opened.close()


def fire(schedule: str, due_ms: int, body: bytes | None = None) -> Fire:
    message = None if body is None else outgoing(Q, body)
    return Fire(schedule, Q, due_ms, f"{schedule}@{due_ms}", message)


class TestScheduleStore:
    def test_a_lease_is_held_by_one_renewed_and_released(self, engine: Opened) -> None:
        store = engine.store
        assert store.hold(LEASE, "a", 10)
        assert not store.hold(LEASE, "b", 10)
        assert store.hold(LEASE, "a", 10)  # renewed
        leader = store.leader(LEASE)
        assert leader is not None and leader.holder == "a"
        assert 5 < leader.until - time.time() <= 10.5
        store.release(LEASE, "b")  # not b's: nothing happens
        assert not engine.again().store.hold(LEASE, "b", 10)
        store.release(LEASE, "a")
        assert store.leader(LEASE) is None
        assert engine.again().store.hold(LEASE, "b", 10)

    def test_a_lease_not_renewed_expires(self, engine: Opened) -> None:
        assert engine.store.hold(LEASE, "a", 0.2)
        other = engine.again().store
        deadline = time.monotonic() + 5
        while not other.hold(LEASE, "b", 10):  # the lease runs out by time, not by an event
            assert time.monotonic() < deadline, "the lease did not expire"
            time.sleep(0.05)
        assert not engine.store.hold(LEASE, "a", 10)

    def test_a_fire_goes_out_once_and_only_if_newer(self, engine: Opened) -> None:
        store = engine.store
        assert store.fire([fire("s", 2000, b"two")]) == [True]
        assert engine.fetched() == [b"two"]
        assert store.fire([fire("s", 2000, b"two again")]) == [False]
        assert store.fire([fire("s", 1000, b"older")]) == [False]
        assert store.fire([fire("s", 3000, b"three"), fire("s", 3000, b"3")]) == [True, False]
        assert engine.fetched() == [b"three"]
        [(name, record)] = store.records({"s": Q, "unknown": Q}).items()
        assert (name, record.due_ms, record.task_id) == ("s", 3000, "s@3000")
        assert abs(record.fired_at_ms / 1000 - time.time()) < 30

    def test_fires_of_several_schedules_in_one_call(self, engine: Opened) -> None:
        fires = [fire("a", 1000, b"a1"), fire("b", 1000, b"b1"), fire("a", 2000, b"a2")]
        assert engine.store.fire(fires) == [True, True, True]
        assert sorted(engine.fetched()) == [b"a1", b"a2", b"b1"]
        records = engine.store.records({"a": Q, "b": Q})
        assert (records["a"].due_ms, records["b"].due_ms) == (2000, 1000)

    def test_a_record_only_enqueues_nothing(self, engine: Opened) -> None:
        assert engine.store.fire([fire("s", 5000)]) == [True]
        assert engine.store.records({"s": Q})["s"].task_id == "s@5000"
        assert engine.store.fire([fire("s", 4000, b"before the start")]) == [False]
        assert engine.fetched(wait=0.2) == []

    def test_schedulers_racing_fire_each_due_time_once(self, engine: Opened) -> None:
        won: list[list[bool]] = []

        def run() -> None:  # a scheduler with connections of its own, opened in its thread
            other = engine.again()
            try:
                fires = [fire("race", d * 1000, b"%d" % d) for d in range(1, 31)]
                won.append([other.store.fire([f])[0] for f in fires])
            finally:
                other.close()

        threads = [threading.Thread(target=run) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(won) == 3
        assert [sum(column) for column in zip(*won, strict=True)] == [1] * 30
        assert sorted(engine.fetched(), key=int) == [b"%d" % d for d in range(1, 31)]


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opened]:
    for urls in _urls(request, tmp_path, BACKENDS):
        opened = Opened(urls)
        yield opened
        opened.close()


class TestKeptByTheResultBackend:
    """Where the broker cannot keep them (RabbitMQ): recorded, then published."""

    def test_a_failed_publish_puts_the_record_back(self, backend: Opened) -> None:
        def down(messages: Sequence[Outgoing]) -> None:
            raise BrokerUnavailable("broker down")

        store = backend.backend.schedule_store(down)
        assert store is not None and not store.atomic
        assert store.fire([fire("s", 1000)]) == [True]  # a record only: nothing to publish
        with pytest.raises(BrokerUnavailable):
            store.fire([fire("s", 2000, b"two")])
        assert store.records({"s": Q})["s"].due_ms == 1000
        sent: list[Outgoing] = []
        working = backend.backend.schedule_store(sent.extend)
        assert working is not None
        assert working.fire([fire("s", 2000, b"two")]) == [True]
        assert [m.body for m in sent] == [b"two"]
