"""One conformance suite for every broker and result backend engine.

A new engine joins by adding its URL factory to BROKERS (and BACKENDS); every test below then
runs on it.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from forkq.engines.contract import (
    Broker,
    Burial,
    Consumer,
    ConsumerSession,
    DeadLetterCaps,
    Delivery,
    Leftovers,
    Recovery,
    ResultBackend,
    ResultWrite,
    outgoing,
)
from forkq.engines.registry import open_backend, open_broker
from forkq.exceptions import BrokerError
from forkq.states import RETRY, SUCCESS
from tests.conftest import amqp_test_url, engine_url, redis_test_url
from tests.redis_cluster import cluster_test_url

BROKERS: dict[str, Callable[[Path], str]] = {
    "sqlite": lambda tmp: f"sqlite:///{tmp}/conformance.sqlite3?lease_ttl=1",
    "memory": lambda tmp: f"memory://{uuid.uuid4().hex}?lease_ttl=1",
    "redis": lambda tmp: redis_test_url(lease_ttl=1),
    "redis-cluster": lambda tmp: cluster_test_url(lease_ttl=1),
    "amqp": lambda tmp: amqp_test_url(lease_ttl=1),
    "amqp-quorum": lambda tmp: amqp_test_url(lease_ttl=1, queue_type="quorum"),
}
BACKENDS = {k: v for k, v in BROKERS.items() if not k.startswith("amqp")}  # none in RabbitMQ
Q = "conformance"
T = TypeVar("T", Broker, ResultBackend)


@pytest.fixture(params=sorted(BROKERS))
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from engine_url(request.param, BROKERS[request.param](tmp_path))


@pytest.fixture(params=sorted(BACKENDS))
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from engine_url(request.param, BACKENDS[request.param](tmp_path))


@pytest.fixture
def broker(url: str) -> Iterator[Broker]:
    b = open_broker(url)
    yield b
    b.close()


@pytest.fixture
def backend(backend_url: str) -> Iterator[ResultBackend]:
    b = open_backend(backend_url)
    yield b
    b.close()


def consumer(name: str = "c1", worker: str = "w1") -> Consumer:
    return Consumer(worker=worker, name=f"{worker}/{name}")


RESULTS = open_backend("memory://conformance-results")  # where sessions store results


def session(broker: Broker, name: str = "c1", worker: str = "w1") -> ConsumerSession:
    """The broker's session for consumer `worker/name` (the same one each time)."""
    return broker.consumer(consumer(name, worker), RESULTS)


def put(broker: Broker, queue: str, body: bytes, priority: int = 0, delay: float = 0.0) -> None:
    broker.publish([outgoing(queue, body, priority, delay)])


def consumers_in_processes(
    url: str, queues: list[str], limit: int, timeout: float, close: bool = True
) -> Callable[[], list[str]]:
    """Three forked consumers (`p0` to `p2`) of `url`, each fetching `queues` until a fetch
    comes back empty and finishing each message (then closing its broker if `close`: its kept
    acks go, and what it holds goes back). Returns what waits for them and gives the bodies
    they took."""
    readers = []
    for n in range(3):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            os.close(r)
            mine = open_broker(url)
            got = []
            while batch := session(mine, f"p{n}").fetch(queues, limit, timeout):
                for d in batch:
                    got.append(d.body.decode())
                    session(mine, f"p{n}").finish(d, None)
            if close:
                mine.close()
            os.write(w, ",".join(got).encode())
            os._exit(0)
        os.close(w)
        readers.append((pid, r))

    def collected() -> list[str]:
        seen: list[str] = []
        for pid, r in readers:
            with os.fdopen(r, "rb") as f:
                seen.extend(x for x in f.read().decode().split(",") if x)
            os.waitpid(pid, 0)
        return seen

    return collected


def bodies(deliveries: list[Delivery]) -> list[bytes]:
    return [d.body for d in deliveries]


def _dead_letter(broker: Broker, queue: str, messages: list[bytes], queue_b: bool = False) -> None:
    """Each message published, fetched and dead-lettered, in order (to `queue`-b if queue_b)."""
    queue = queue + "-b" if queue_b else queue
    for body in messages:
        put(broker, queue, body)
        [d] = session(broker).fetch([queue], 1, 5.0)
        session(broker).dead_letter(d, f"dead: {body!r}")


def _later(opener: Callable[[str], T], url: str, call: Callable[[T], object]) -> Callable[[], None]:
    """A call made later, from another thread, on a connection of its own."""

    def later() -> None:
        conn = opener(url)
        try:
            call(conn)
        finally:
            conn.close()  # type: ignore[attr-defined]

    return later


class TestBroker:
    def test_publish_fetch_ack(self, broker: Broker) -> None:
        put(broker, Q, b"one")
        [d] = session(broker).fetch([Q], 10, 0)
        assert (d.body, d.queue, d.delivery_count) == (b"one", Q, 1)
        assert broker.size(Q) == 1  # held, not gone
        session(broker).finish(d, None)
        assert broker.size(Q) == 0

    def test_depth_counts_held_ready_and_delayed_messages(self, broker: Broker) -> None:
        for body in (b"held", b"ready"):
            put(broker, Q, body)
        put(broker, Q, b"later", delay=600)
        assert len(session(broker).fetch([Q], 1, 5.0)) == 1
        depth = broker.depth(Q)
        if broker.capabilities.counts_delayed:
            assert (depth.messages, depth.delayed) == (3, 1) == (broker.size(Q), 1)
        else:  # RabbitMQ: the delay queues are shared by every queue of the prefix
            assert (depth.messages, depth.delayed) == (2, None) == (broker.size(Q), None)
        assert broker.depth("elsewhere").messages == 0

    def test_depth_counts_the_due_messages_by_priority_band(self, broker: Broker) -> None:
        for priority in (0, 2, 4, 9, 9):
            put(broker, Q, b"p%d" % priority, priority=priority)
        put(broker, Q, b"later", delay=600, priority=9)
        assert len(session(broker).fetch([Q], 1, 5.0)) == 1  # a 9, held: still counted
        bands = broker.depth(Q).bands
        if broker.capabilities.counts_bands:
            assert bands == (2, 1, 0, 2)  # 0-2, 3-5, 6-8, 9; the delayed one in none
        else:  # RabbitMQ orders by priority inside one queue: no bands to count
            assert bands is None

    def test_a_held_message_is_not_fetched_twice(self, broker: Broker) -> None:
        put(broker, Q, b"one")
        assert len(session(broker, "a").fetch([Q], 10, 0)) == 1
        assert session(broker, "b").fetch([Q], 10, 0) == []

    def test_fetch_respects_limit_and_fifo(self, broker: Broker) -> None:
        for i in range(5):
            put(broker, Q, str(i).encode())
        assert bodies(session(broker).fetch([Q], 3, 0)) == [b"0", b"1", b"2"]
        assert bodies(session(broker).fetch([Q], 3, 0)) == [b"3", b"4"]

    def test_priority_higher_first(self, broker: Broker) -> None:
        if not broker.capabilities.priorities:
            pytest.skip("this engine has no priorities (RabbitMQ quorum queues before 3.12)")
        put(broker, Q, b"low", priority=0)
        put(broker, Q, b"high", priority=9)
        put(broker, Q, b"mid", priority=5)
        assert bodies(session(broker).fetch([Q], 3, 0)) == [b"high", b"mid", b"low"]

    def test_several_queues(self, broker: Broker) -> None:
        put(broker, "a", b"in-a")
        put(broker, "b", b"in-b")
        put(broker, "c", b"in-c")
        got = sorted(bodies(session(broker).fetch(["a", "b"], 10, 0)))
        assert got == [b"in-a", b"in-b"]
        assert broker.size("c") == 1

    def test_delayed_message_visible_when_due(self, broker: Broker) -> None:
        put(broker, Q, b"later", delay=0.4)
        assert session(broker).fetch([Q], 1, 0) == []
        started = time.monotonic()
        [d] = session(broker).fetch([Q], 1, 5.0)
        waited = time.monotonic() - started
        assert d.body == b"later"
        assert 0.2 < waited < 2.0  # woke for the due time, not the 5 s timeout

    def test_empty_fetch_blocks_for_the_timeout(self, broker: Broker) -> None:
        started = time.monotonic()
        assert session(broker).fetch([Q], 1, 0.3) == []
        assert 0.25 <= time.monotonic() - started < 2.0

    def test_fetch_wakes_on_publish_from_another_connection(self, url: str, broker: Broker) -> None:
        timer = threading.Timer(0.2, _later(open_broker, url, lambda b: put(b, Q, b"wake")))
        timer.start()
        try:
            started = time.monotonic()
            got = session(broker).fetch([Q], 1, 10.0)
            assert bodies(got) == [b"wake"]
            assert time.monotonic() - started < 3.0
        finally:
            timer.join()

    def test_a_woken_fetch_takes_no_more_than_its_limit(self, url: str, broker: Broker) -> None:
        # Three bands at once, while the consumer waits: it takes one; the others stay free.
        items = [outgoing(Q, b"low", 0), outgoing(Q, b"mid", 5), outgoing(Q, b"top", 9)]
        timer = threading.Timer(0.2, _later(open_broker, url, lambda b: b.publish(items)))
        timer.start()
        try:
            got = session(broker, "waiter").fetch([Q], 1, 10.0)
        finally:
            timer.join()
        assert len(got) == 1
        assert len(session(broker, "other").fetch([Q], 10, 0)) == 2

    def test_finish_stores_the_result_then_acks(self, url: str, broker: Broker) -> None:
        backend = open_backend(url if url.split(":")[0] in BACKENDS else "memory://finish")
        try:
            put(broker, Q, b"one")
            put(broker, Q, b"two")
            finishing = broker.consumer(consumer("finishing"), backend)
            first, second = finishing.fetch([Q], 2, 0)
            finishing.finish(first, ResultWrite("t-1", SUCCESS, b"r", 60))
            stored = backend.get("t-1")
            assert stored is not None and (stored.state, stored.payload) == (SUCCESS, b"r")
            assert broker.size(Q) == 1
            finishing.finish(second, None)  # ignore_result: just the ack
            assert broker.size(Q) == 0  # this process's kept acks go first
        finally:
            backend.close()

    def test_requeue_makes_it_available_again(self, broker: Broker) -> None:
        put(broker, Q, b"x")
        [d] = session(broker).fetch([Q], 1, 0)
        session(broker).requeue(d)
        [again] = session(broker, "other").fetch([Q], 1, 0)
        assert again.body == b"x"
        assert again.delivery_count == 1  # a requeue does not count as a run

    def test_requeue_with_delay(self, broker: Broker) -> None:
        put(broker, Q, b"x")
        [d] = session(broker).fetch([Q], 1, 0)
        session(broker).requeue(d, delay=0.5)
        requeued = time.monotonic()
        assert session(broker).fetch([Q], 1, 0) == []
        [again] = session(broker).fetch([Q], 1, 5.0)
        assert again.body == b"x" and again.delivery_count == 1
        assert time.monotonic() - requeued >= 0.4

    def test_a_leaving_consumer_releases_what_it_holds(self, broker: Broker) -> None:
        for body in (b"running", b"prefetched"):
            put(broker, Q, body)
        held = session(broker, "leaving").fetch([Q], 2, 0)
        running = next(d for d in held if d.body == b"running")
        assert session(broker, "leaving").release([running.receipt]) == 2
        again = {d.body: d.delivery_count for d in session(broker, "new").fetch([Q], 2, 0)}
        assert again == {b"running": 2, b"prefetched": 1}

    def test_a_release_never_gives_back_what_was_finished(self, broker: Broker) -> None:
        # The kept ack of the finished message goes before the release: it is not run twice.
        for body in (b"finished", b"prefetched"):
            put(broker, Q, body)
        finished, _ = session(broker, "leaving").fetch([Q], 2, 0)
        session(broker, "leaving").finish(finished, None)
        assert session(broker, "leaving").release() == 1
        assert bodies(session(broker, "new").fetch([Q], 2, 0)) == [b"prefetched"]
        assert broker.size(Q) == 1

    def test_release_of_a_dead_consumer_counts_only_the_running_message(
        self, broker: Broker
    ) -> None:
        for body in (b"running", b"prefetched"):
            put(broker, Q, body)
        held = session(broker, "dead").fetch([Q], 2, 0)
        running = next(d for d in held if d.body == b"running")
        leftovers = Leftovers(running=(running.receipt,))
        if not broker.capabilities.releases_others:
            with pytest.raises(BrokerError, match="cannot release another process's messages"):
                broker.release(consumer("dead"), leftovers)
            return
        assert broker.release(consumer("dead"), leftovers) == 2
        again = {d.body: d.delivery_count for d in session(broker, "new").fetch([Q], 2, 0)}
        assert again == {b"running": 2, b"prefetched": 1}

    def test_release_of_a_dead_consumer_acks_its_finished_and_buries_its_dead(
        self, broker: Broker
    ) -> None:
        if not broker.capabilities.releases_others:
            pytest.skip("recovery by connection: the server redelivers what a dead child held")
        for body in (b"finished", b"killed", b"prefetched"):
            put(broker, Q, body)
        finished, killed, _ = session(broker, "dead").fetch([Q], 3, 0)
        leftovers = Leftovers(
            finished=((Q, finished.receipt),), dead=(Burial(Q, killed.receipt, "too long"),)
        )
        assert broker.release(consumer("dead"), leftovers) == 1
        assert bodies(session(broker, "new").fetch([Q], 3, 0)) == [b"prefetched"]
        [letter] = broker.dead_letters(Q)
        assert (letter.body, letter.reason) == (b"killed", "too long")

    def test_releasing_a_consumer_of_this_process_sends_its_kept_acks_first(
        self, broker: Broker
    ) -> None:
        if not broker.capabilities.releases_others:
            pytest.skip("recovery by connection: the server redelivers what a dead child held")
        for body in (b"finished", b"prefetched"):
            put(broker, Q, body)
        finished, _ = session(broker, "mine").fetch([Q], 2, 0)
        session(broker, "mine").finish(finished, None)
        assert broker.release(consumer("mine")) == 1
        assert bodies(session(broker, "new").fetch([Q], 2, 0)) == [b"prefetched"]

    def test_a_consumer_has_one_session_with_one_backend(self, broker: Broker) -> None:
        session(broker, "once")
        with pytest.raises(ValueError, match="another backend"):
            broker.consumer(consumer("once"), open_backend("memory://another"))

    def test_release_leaves_other_consumers_alone(self, broker: Broker) -> None:
        put(broker, Q, b"a")
        put(broker, Q, b"b")
        session(broker, "one").fetch([Q], 1, 0)
        session(broker, "two").fetch([Q], 1, 0)
        assert session(broker, "one").release() == 1
        assert bodies(session(broker, "three").fetch([Q], 5, 0)) == [b"a"]

    def test_a_finish_after_the_hold_was_released_is_ignored(self, broker: Broker) -> None:
        put(broker, Q, b"x")
        [d] = session(broker, "first").fetch([Q], 1, 0)
        session(broker, "first").release()
        [again] = session(broker, "second").fetch([Q], 1, 0)
        session(broker, "first").finish(d, None)
        session(broker, "first").flush()
        assert broker.size(Q) == 1  # the second holder's message stays
        session(broker, "second").finish(again, None)
        assert broker.size(Q) == 0

    def test_a_finish_with_a_result_sends_the_kept_acks_too(self, url: str, broker: Broker) -> None:
        put(broker, Q, b"a")
        put(broker, Q, b"b")
        mixed = session(broker, "mixed")
        a, b = mixed.fetch([Q], 2, 0)
        mixed.finish(a, None)
        mixed.finish(b, ResultWrite("t-2", SUCCESS, b"r", 60))
        assert mixed.kept_acks() == []
        observer = open_broker(url)
        try:
            assert observer.size(Q) == 0
        finally:
            observer.close()

    def test_dead_letter_by_a_consumer_not_holding_it_is_ignored(self, broker: Broker) -> None:
        put(broker, Q, b"x")  # the queue has never had a dead letter
        [d] = session(broker, "holder").fetch([Q], 1, 0)
        session(broker, "stranger").dead_letter(d, "lost its hold")
        assert broker.size(Q) == 1 and broker.dead_letters() == []
        session(broker, "holder").finish(d, None)
        assert broker.size(Q) == 0

    def test_lease_of_a_silent_worker_expires(self, url: str, broker: Broker) -> None:
        if broker.capabilities.recovery is not Recovery.LEASE:
            pytest.skip("this engine recovers by connection: tests/engines/test_amqp.py covers it")
        put(broker, Q, b"x")
        session(broker, "c", worker="dead-worker").fetch([Q], 1, 0)
        started = time.monotonic()
        [d] = session(broker, "c", worker="alive").fetch([Q], 1, broker.lease_ttl * 5)
        assert d.body == b"x" and d.delivery_count == 2
        assert time.monotonic() - started >= broker.lease_ttl * 0.5

    @pytest.mark.slow
    def test_heartbeat_keeps_the_lease(self, broker: Broker) -> None:
        if broker.capabilities.recovery is not Recovery.LEASE:
            pytest.skip("this engine recovers by connection: tests/engines/test_amqp.py covers it")
        put(broker, Q, b"x")
        session(broker, "c", worker="beating").fetch([Q], 1, 0)
        deadline = time.monotonic() + broker.lease_ttl * 2.5
        while time.monotonic() < deadline:
            broker.heartbeat("beating")
            assert session(broker, "c", worker="thief").fetch([Q], 1, broker.lease_ttl / 4) == []

    def test_heartbeats_say_which_workers_consume_a_queue(self, broker: Broker) -> None:
        broker.heartbeat("w1", [Q])
        broker.heartbeat("w2", [Q, "other"])
        broker.heartbeat("w1", [Q])  # a later beat replaces the earlier one
        seen = broker.consumers_seen(Q, 60)
        assert sorted(s.worker for s in seen) == ["w1", "w2"]  # each once
        assert [s.seen_at for s in seen] == sorted((s.seen_at for s in seen), reverse=True)
        assert [s.worker for s in broker.consumers_seen("other", 60)] == ["w2"]
        assert broker.consumers_seen("nobody", 60) == []
        [latest, _] = broker.consumers_seen(Q, 60)
        assert abs(latest.seen_at - time.time()) < 5

    def test_only_recent_heartbeats_count(self, broker: Broker) -> None:
        broker.heartbeat("early", [Q])
        time.sleep(0.3)  # the beat ages: time passing, not a wait for an event
        broker.heartbeat("late", [Q])
        assert [s.worker for s in broker.consumers_seen(Q, 0.2)] == ["late"]
        broker.heartbeat("silent")  # a beat naming no queue says nothing about any
        assert "silent" not in [s.worker for s in broker.consumers_seen(Q, 60)]

    def test_dead_letter_list_requeue_purge(self, broker: Broker) -> None:
        put(broker, Q, b"poison")
        [d] = session(broker).fetch([Q], 1, 0)
        session(broker).dead_letter(d, "bad input")
        assert broker.size(Q) == 0
        [letter] = broker.dead_letters(Q)
        assert (letter.body, letter.reason, letter.queue) == (b"poison", "bad input", Q)
        assert broker.requeue_dead([letter.receipt]) == 1
        assert broker.dead_letters(Q) == []
        [d] = session(broker).fetch([Q], 1, 0)
        session(broker).dead_letter(d, "again")
        assert broker.purge_dead(Q) == 1
        assert broker.dead_letters() == []

    def test_delete_dead_deletes_only_the_letters_named(self, broker: Broker) -> None:
        _dead_letter(broker, Q, [b"one", b"two", b"three"])
        _dead_letter(broker, Q, [b"other"], queue_b=True)
        letters = {d.body: d.receipt for d in broker.dead_letters()}
        doomed = [letters[b"one"], letters[b"other"], "no-such-receipt", "9-9@nowhere", "",
                  "\u00b2", "9" * 23, f"{'9' * 25}-0@{Q}"]  # fmt: skip
        assert broker.delete_dead(doomed) == 2
        assert sorted(d.body for d in broker.dead_letters()) == [b"three", b"two"]
        assert broker.delete_dead([letters[b"one"]]) == 0  # gone already
        assert broker.size(Q) == 0  # deleted, not requeued
        assert broker.requeue_dead(["not-a-receipt"]) == 0  # requeue passes over them too

    def test_dead_letters_are_capped_by_count_the_oldest_going_first(self, url: str) -> None:
        capped = open_broker(url, DeadLetterCaps(max_count=3, max_age=0))
        try:
            _dead_letter(capped, Q, [b"other"], queue_b=True)
            _dead_letter(capped, Q, [b"1", b"2", b"3", b"4", b"5"])
            assert [d.body for d in capped.dead_letters(Q)] == [b"3", b"4", b"5"]
            if capped.capabilities.dead_caps_per_queue:  # another queue's letters are not counted
                assert [d.body for d in capped.dead_letters(Q + "-b")] == [b"other"]
            else:  # RabbitMQ: one dead-letter queue per prefix, capped whole
                assert len(capped.dead_letters()) == 3
        finally:
            capped.close()

    def test_dead_letters_older_than_the_ttl_are_gone_once_another_comes(self, url: str) -> None:
        capped = open_broker(url, DeadLetterCaps(max_count=0, max_age=0.3))
        try:
            _dead_letter(capped, Q, [b"old", b"older"])
            assert len(capped.dead_letters(Q)) == 2
            time.sleep(0.4)  # the letters age: time passing, not a wait for an event
            _dead_letter(capped, Q, [b"new"])
            assert [d.body for d in capped.dead_letters(Q)] == [b"new"]
        finally:
            capped.close()

    def test_without_caps_every_dead_letter_stays(self, url: str) -> None:
        uncapped = open_broker(url, DeadLetterCaps(max_count=0, max_age=0))
        try:
            _dead_letter(uncapped, Q, [str(i).encode() for i in range(12)])
            assert len(uncapped.dead_letters(Q)) == 12
        finally:
            uncapped.close()

    def test_requeued_dead_letter_keeps_its_priority(self, broker: Broker) -> None:
        if not broker.capabilities.priorities:
            pytest.skip("this engine has no priorities (RabbitMQ quorum queues before 3.12)")
        put(broker, Q, b"urgent", priority=8)
        [d] = session(broker).fetch([Q], 1, 0)
        session(broker).dead_letter(d, "oops")
        assert broker.dead_letters(Q)[0].priority == 8
        put(broker, Q, b"normal", priority=3)
        broker.requeue_dead()
        assert bodies(session(broker).fetch([Q], 2, 0)) == [b"urgent", b"normal"]

    def test_purge_deletes_waiting_not_held(self, broker: Broker) -> None:
        for body in (b"a", b"b", b"c"):
            put(broker, Q, body)
        session(broker).fetch([Q], 1, 0)
        assert broker.purge(Q) == 2
        assert broker.size(Q) == 1

    def test_publish_many(self, broker: Broker) -> None:
        broker.publish([outgoing(Q, str(i).encode()) for i in range(50)])
        assert broker.size(Q) == 50

    @pytest.mark.timeout(60)
    def test_concurrent_consumers_in_processes_never_share(self, url: str, broker: Broker) -> None:
        if not broker.capabilities.across_processes:
            pytest.skip("this engine's messages stay in the process that opened it")
        total = 300
        broker.publish([outgoing(Q, str(i).encode()) for i in range(total)])
        seen = consumers_in_processes(url, [Q], 7, 0)()
        assert sorted(seen, key=int) == [str(i) for i in range(total)]  # each exactly once
        assert broker.size(Q) == 0


class TestResultBackend:
    def test_missing_is_none(self, backend: ResultBackend) -> None:
        assert backend.get("nope") is None

    def test_store_get_overwrite_forget(self, backend: ResultBackend) -> None:
        backend.store("t1", RETRY, b"r", 60)
        backend.store("t1", SUCCESS, b"s", 60)
        stored = backend.get("t1")
        assert stored is not None and (stored.state, stored.payload) == (SUCCESS, b"s")
        backend.forget("t1")
        assert backend.get("t1") is None

    def test_ttl_expires(self, backend: ResultBackend) -> None:
        backend.store("t1", SUCCESS, b"s", 0.2)
        assert backend.get("t1") is not None
        result = backend.wait("never", 0.4)  # lets the TTL pass without a sleep
        assert result is None
        assert backend.get("t1") is None

    def test_wait_returns_ready_result_at_once(self, backend: ResultBackend) -> None:
        backend.store("t1", SUCCESS, b"s", 60)
        started = time.monotonic()
        assert backend.wait("t1", 10) is not None
        assert time.monotonic() - started < 1

    def test_wait_skips_non_ready_states_and_wakes_on_store(
        self, backend_url: str, backend: ResultBackend
    ) -> None:
        backend.store("t1", RETRY, b"r", 60)
        store = _later(open_backend, backend_url, lambda b: b.store("t1", SUCCESS, b"done", 60))
        timer = threading.Timer(0.2, store)
        timer.start()
        try:
            started = time.monotonic()
            stored = backend.wait("t1", 10)
            assert stored is not None and stored.payload == b"done"
            assert time.monotonic() - started < 3
        finally:
            timer.join()

    def test_wait_times_out_with_latest_record(self, backend: ResultBackend) -> None:
        backend.store("t1", RETRY, b"r", 60)
        stored = backend.wait("t1", 0.2)
        assert stored is not None and stored.state == RETRY

    def test_count_start_counts_per_key_and_forgets_after_its_ttl(
        self, backend: ResultBackend
    ) -> None:
        assert [backend.count_start("m1", 60) for _ in range(3)] == [1, 2, 3]
        assert backend.count_start("m2", 60) == 1
        assert backend.count_start("m3", 0.2) == 1
        backend.wait("never", 0.4)  # lets the TTL pass without a sleep
        assert backend.count_start("m3", 60) == 1
        backend.forget_starts("m1")
        assert backend.count_start("m1", 60) == 1
        assert backend.count_start("m2", 60) == 2


def test_a_lock_is_held_by_one_holder_until_it_lets_go(backend: ResultBackend) -> None:
    key = f"lock-{uuid.uuid4().hex}"
    assert backend.lock(key, "t1", 60) is None
    assert backend.lock(key, "t2", 60) == "t1"
    assert backend.lock(key, "t1", 60) is None  # its holder may take it again
    backend.unlock(key, "t2")  # not the holder: nothing happens
    assert backend.lock(key, "t3", 60) == "t1"
    backend.unlock(key, "t1")
    assert backend.lock(key, "t3", 60) is None
    assert backend.lock(f"other-{key}", "t4", 60) is None  # locks are independent


def test_a_lock_expires(backend: ResultBackend) -> None:
    key = f"lock-{uuid.uuid4().hex}"
    assert backend.lock(key, "t1", 0.05) is None
    time.sleep(0.1)  # the expiry is the behaviour under test: time must pass
    assert backend.lock(key, "t2", 60) is None
    backend.unlock(key, "t1")  # the first holder's unlock leaves the new holder's lock
    assert backend.lock(key, "t3", 60) == "t2"
