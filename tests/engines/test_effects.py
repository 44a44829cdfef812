"""Effects and chord votes on every engine: the result backends' batch writes and reads and
their chord counts (`ResultBackend.store_all`, `get_many`, `vote`, `fired`), and
`ConsumerSession.finish` with `Effects` on every broker, with its results where users keep
them: the atomic path (Redis with its results on the same server, SQLite with its results in
the same file) and the generic one (memory, RabbitMQ with Redis or SQLite results, and a Redis
or SQLite broker whose results live elsewhere).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from forkq.engines.contract import (
    ChordVote,
    Consumer,
    ConsumerSession,
    Delivery,
    Effects,
    Outgoing,
    ResultBackend,
    ResultWrite,
    StoredResult,
    outgoing,
)
from forkq.engines.registry import open_backend, open_broker
from forkq.states import FAILURE, PENDING, SUCCESS
from tests.conftest import amqp_test_url, engine_url, redis_test_url
from tests.engines.test_conformance import BACKENDS

Q, BODY = "members", "body"

Urls = Callable[[Path], tuple[str, str]]  # the broker's URL and the result backend's


def _same(url: str) -> Urls:
    return lambda tmp: (url.format(tmp=tmp), url.format(tmp=tmp))


# name: (the broker's engine, the backend's engine, their URLs, whether finish is atomic)
SETUPS: dict[str, tuple[str, str, Urls, bool]] = {
    "memory": ("memory", "memory", lambda tmp: (f"memory://{tmp.name}",) * 2, False),
    "sqlite": ("sqlite", "sqlite", _same("sqlite:///{tmp}/effects.sqlite3"), True),
    "sqlite+other-file": (
        "sqlite",
        "sqlite",
        lambda tmp: (f"sqlite:///{tmp}/broker.sqlite3", f"sqlite:///{tmp}/results.sqlite3"),
        False,
    ),
    "redis": ("redis", "redis", lambda tmp: (redis_test_url(),) * 2, True),
    "redis+memory-results": (
        "redis",
        "memory",
        lambda tmp: (redis_test_url(), f"memory://{tmp.name}"),
        False,
    ),
    "amqp+redis-results": ("amqp", "redis", lambda tmp: (amqp_test_url(), redis_test_url()), False),
    "amqp+sqlite-results": (
        "amqp",
        "sqlite",
        lambda tmp: (amqp_test_url(), f"sqlite:///{tmp}/results.sqlite3"),
        False,
    ),
}


class Setup:
    def __init__(self, urls: tuple[str, str], atomic: bool) -> None:
        self.urls, self.atomic = urls, atomic
        self.broker, self.backend = open_broker(urls[0]), open_backend(urls[1])

    @property
    def across_processes(self) -> bool:
        return not any(url.startswith("memory:") for url in self.urls)

    def session(self, name: str = "c1") -> ConsumerSession:
        return self.broker.consumer(Consumer("w1", f"w1/{name}"), self.backend)


@pytest.fixture(params=sorted(SETUPS))
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    broker_kind, backend_kind, urls, atomic = SETUPS[request.param]
    broker_url, backend_url = urls(tmp_path)
    with contextlib.ExitStack() as stack:
        for kind, url in ((broker_kind, broker_url), (backend_kind, backend_url)):
            stack.enter_context(contextlib.contextmanager(engine_url)(kind, url))
        opened = Setup((broker_url, backend_url), atomic)
        stack.callback(opened.broker.close)
        stack.callback(opened.backend.close)
        yield opened


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResultBackend]:
    for url in engine_url(request.param, BACKENDS[request.param](tmp_path)):
        opened = open_backend(url)
        yield opened
        opened.close()


def write(
    task_id: str, state: str = SUCCESS, payload: bytes = b"r", ttl: float = 60
) -> ResultWrite:
    return ResultWrite(task_id, state, payload, ttl)


def vote(
    member: str,
    size: int = 3,
    chord: str = "chord",
    failed: bool = False,
    then: tuple[Outgoing, ...] = (),
    ttl: float = 60,
) -> ChordVote:
    return ChordVote(chord, member, size, failed, then, ttl)


def record(stored: StoredResult | None) -> tuple[str, bytes] | None:
    return None if stored is None else (stored.state, stored.payload)


def let_pass(backend: ResultBackend, seconds: float) -> None:
    """Lets time pass without a sleep: a wait for a result that never comes."""
    assert backend.wait(f"never-{uuid.uuid4().hex}", seconds) is None


class TestBackend:
    def test_store_all_and_get_many_in_order_missing_and_expired(
        self, backend: ResultBackend
    ) -> None:
        backend.store_all(
            [write("a", payload=b"A"), write("b", PENDING, b"B"), write("c", ttl=0.2)]
        )
        got = backend.get_many(["b", "missing", "a", "c", "a"])
        assert [record(r) for r in got] == [
            (PENDING, b"B"), None, (SUCCESS, b"A"), (SUCCESS, b"r"), (SUCCESS, b"A"),
        ]  # fmt: skip
        let_pass(backend, 0.4)
        assert [record(r) for r in backend.get_many(["c", "a"])] == [None, (SUCCESS, b"A")]
        assert backend.get_many([]) == []
        backend.store_all([])

    def test_a_vote_stores_its_writes(self, backend: ResultBackend) -> None:
        backend.vote([write("m1", payload=b"one"), write("other", FAILURE)], vote("m1"))
        assert [record(r) for r in backend.get_many(["m1", "other"])] == [
            (SUCCESS, b"one"), (FAILURE, b"r"),
        ]  # fmt: skip

    def test_each_member_counts_once_and_the_vote_reaching_the_size_fires(
        self, backend: ResultBackend
    ) -> None:
        assert [backend.vote([], vote("m1")) for _ in range(4)] == [False] * 4
        assert backend.vote([], vote("m2")) is False
        assert backend.vote([], vote("m2")) is False
        assert backend.vote([], vote("m3")) is True

    def test_the_firer_fires_again_until_fired_and_no_other_ever(
        self, backend: ResultBackend
    ) -> None:
        for member in ("m1", "m2"):
            assert backend.vote([], vote(member, size=2)) is (member == "m2")
        assert backend.vote([], vote("m2", size=2)) is True  # redelivered before `fired`
        assert backend.vote([], vote("m1", size=2)) is False
        backend.fired(vote("m2", size=2))
        assert backend.vote([], vote("m2", size=2)) is False
        assert backend.vote([], vote("m1", size=2)) is False
        assert backend.vote([], vote("m3", size=2)) is False

    def test_the_first_failure_fires_once(self, backend: ResultBackend) -> None:
        assert backend.vote([], vote("m1")) is False
        assert backend.vote([], vote("f1", failed=True)) is True
        assert backend.vote([], vote("f1", failed=True)) is True  # before `fired`
        assert backend.vote([], vote("f2", failed=True)) is False
        backend.fired(vote("f1", failed=True))
        assert backend.vote([], vote("f1", failed=True)) is False
        assert backend.vote([], vote("f2", failed=True)) is False
        assert [backend.vote([], vote(m)) for m in ("m2", "m3")] == [False, False]

    def test_a_failure_after_the_chord_fired_does_not_fire(self, backend: ResultBackend) -> None:
        assert backend.vote([], vote("m1", size=1)) is True
        assert backend.vote([], vote("f1", size=1, failed=True)) is False
        backend.fired(vote("m1", size=1))
        assert backend.vote([], vote("f1", size=1, failed=True)) is False

    def test_chords_are_counted_apart(self, backend: ResultBackend) -> None:
        assert backend.vote([], vote("m1", size=2, chord="one")) is False
        assert backend.vote([], vote("m1", size=2, chord="two")) is False
        assert backend.vote([], vote("m2", size=2, chord="two")) is True

    def test_a_chord_is_forgotten_its_ttl_after_the_last_vote(self, backend: ResultBackend) -> None:
        assert backend.vote([], vote("m1", size=2, ttl=0.2)) is False
        let_pass(backend, 0.4)
        assert backend.vote([], vote("m2", size=2, ttl=0.2)) is False  # m1 was forgotten
        assert backend.vote([], vote("m1", size=2, ttl=0.2)) is True
        backend.fired(vote("m1", size=2, ttl=0.2))
        let_pass(backend, 0.4)
        assert backend.vote([], vote("m1", size=1, ttl=60)) is True  # done was forgotten too


def members(setup: Setup, count: int) -> list[Delivery]:
    """`count` members published and fetched by the setup's first session."""
    setup.broker.publish([outgoing(Q, f"m{i}".encode()) for i in range(count)])
    got: list[Delivery] = []
    while len(got) < count:  # RabbitMQ pushes them: a fetch takes those that came
        batch = setup.session().fetch([Q], count - len(got), 5.0)
        assert batch, f"only {len(got)} of {count} members came"
        got += batch
    return sorted(got, key=lambda d: d.body)


def fetch_all(setup: Setup, queue: str, expected: int, name: str = "reader") -> list[bytes]:
    """What `queue` holds once `expected` messages came (each fetch waits for the next), and
    whatever else arrives within a short wait after them: a message published twice shows."""
    got: list[bytes] = []
    reader = setup.session(name)
    while len(got) < expected:
        batch = reader.fetch([queue], 10, 5.0)
        assert batch, f"only {got} of {expected} messages came"
        got += [d.body for d in batch]
    got += [d.body for d in reader.fetch([queue], 10, 0.3)]
    return sorted(got)


def chord_finish(
    setup: Setup, session: ConsumerSession, delivery: Delivery, member: str, size: int
) -> None:
    then = (outgoing(BODY, b"body"),)
    effects = Effects(vote=vote(member, size=size, then=then))
    session.finish(delivery, write(member, payload=delivery.body), effects)


class TestFinishWithEffects:
    def test_only_the_engines_that_can_finish_atomically_say_so(self, setup: Setup) -> None:
        assert setup.session().atomic_effects is setup.atomic

    def test_the_writes_are_stored_the_messages_published_and_the_message_acked(
        self, setup: Setup
    ) -> None:
        [d] = members(setup, 1)
        effects = Effects(
            writes=(write("skipped", FAILURE, b"never ran"),),
            publish=(outgoing("next", b"now", priority=5), outgoing("next", b"later", delay=0.2)),
        )
        setup.session().finish(d, write("t1", payload=b"done"), effects)
        stored = setup.backend.get_many(["t1", "skipped"])
        assert [record(r) for r in stored] == [(SUCCESS, b"done"), (FAILURE, b"never ran")]
        assert fetch_all(setup, "next", 2) == [b"later", b"now"]
        assert setup.broker.size(Q) == 0

    def test_effects_without_a_result_or_a_vote(self, setup: Setup) -> None:
        first, second = members(setup, 2)
        setup.session().finish(first, None, Effects(publish=(outgoing("next", b"retry"),)))
        setup.session().finish(second, None, Effects(writes=(write("w"),)))
        assert fetch_all(setup, "next", 1) == [b"retry"]
        assert record(setup.backend.get("w")) == (SUCCESS, b"r")
        assert setup.broker.size(Q) == 0

    def test_a_finish_with_effects_sends_the_kept_acks_too(self, setup: Setup) -> None:
        first, second = members(setup, 2)
        session = setup.session()
        session.finish(first, None)  # kept back where the engine keeps acks
        session.finish(second, write("t2"), Effects(publish=(outgoing("next", b"x"),)))
        assert session.kept_acks() == []
        assert setup.broker.size(Q) == 0

    def test_the_chord_body_is_published_once_when_the_last_member_finishes(
        self, setup: Setup
    ) -> None:
        held = members(setup, 3)
        for n, delivery in enumerate(held):
            chord_finish(setup, setup.session(), delivery, f"m{n}", 3)
            if n < 2:
                assert setup.session("peek").fetch([BODY], 1, 0) == []
        assert fetch_all(setup, BODY, 1) == [b"body"]
        stored = setup.backend.get_many(["m0", "m1", "m2"])
        assert [record(r) for r in stored] == [(SUCCESS, f"m{n}".encode()) for n in range(3)]
        assert setup.broker.size(Q) == 0

    def test_a_member_redelivered_after_its_finish_never_publishes_the_body_again(
        self, setup: Setup
    ) -> None:
        first, last = members(setup, 2)
        chord_finish(setup, setup.session(), first, "m0", 2)
        # The last member's hold is lost before its finish (released: an ack that never
        # lands); it is redelivered to another consumer, which runs it again.
        setup.session().release()
        [again] = setup.session("second").fetch([Q], 1, 5.0)
        assert again.body == last.body
        chord_finish(setup, setup.session(), last, "m1", 2)  # the first run's finish
        chord_finish(setup, setup.session("second"), again, "m1", 2)
        assert fetch_all(setup, BODY, 1) == [b"body"]
        assert setup.broker.size(Q) == 0

    def test_a_failing_member_publishes_its_error_callbacks_once(self, setup: Setup) -> None:
        held = members(setup, 3)
        session, errback = setup.session(), (outgoing("errors", b"errback"),)
        for n, delivery in enumerate(held):  # m0 fails, then m1 fails, then m2 succeeds
            failed = n < 2
            member_vote = vote(f"m{n}", failed=failed, then=errback if failed else ())
            result = write(f"m{n}", FAILURE if failed else SUCCESS)
            session.finish(delivery, result, Effects(vote=member_vote))
        assert fetch_all(setup, "errors", 1) == [b"errback"]
        assert setup.broker.size(Q) == 0

    def test_a_fired_vote_publishes_delayed_messages_when_due(self, setup: Setup) -> None:
        [d] = members(setup, 1)
        then = (
            outgoing(BODY, b"now", priority=9),
            outgoing(BODY, b"later", 3, delay=0.3),
            outgoing(BODY, b"at once", delay=0.0001),  # under a millisecond, still delayed
        )
        setup.session().finish(d, write("m0"), Effects(vote=vote("m0", size=1, then=then)))
        assert fetch_all(setup, BODY, 3) == [b"at once", b"later", b"now"]

    @pytest.mark.timeout(60)
    def test_members_finished_by_processes_at_once_publish_the_body_once(
        self, setup: Setup
    ) -> None:
        if not setup.across_processes:
            pytest.skip("the broker's messages or the results stay in the process that opened it")
        total = 30
        setup.broker.publish([outgoing(Q, f"m{i}".encode()) for i in range(total)])
        children = [_finish_members_in_a_child(setup, n, total) for n in range(3)]
        assert [os.waitpid(pid, 0)[1] for pid in children] == [0, 0, 0]
        assert fetch_all(setup, BODY, 1) == [b"body"]
        stored = setup.backend.get_many([f"m{i}" for i in range(total)])
        assert all(r is not None for r in stored)
        assert setup.broker.size(Q) == 0


def _finish_members_in_a_child(setup: Setup, n: int, total: int) -> int:
    """A forked process of its own connections that fetches members and finishes each with its
    vote until none is left; its exit status says whether it failed."""
    pid = os.fork()
    if pid:
        return pid
    status = 1  # pragma: no cover - the child reports through its exit status
    try:
        mine = Setup(setup.urls, setup.atomic)
        session = mine.broker.consumer(Consumer("w1", f"w1/p{n}"), mine.backend)
        while batch := session.fetch([Q], 2, 0.5):
            for delivery in batch:
                chord_finish(mine, session, delivery, delivery.body.decode(), total)
        mine.broker.close()
        mine.backend.close()
        status = 0
    finally:
        os._exit(status)
