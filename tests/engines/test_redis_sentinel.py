"""The Redis engine over `redis+sentinel://` on a Sentinel group of the test's own
(tests/redis_sentinel.py): publish, fetch, finish and results through the primary the
Sentinels name; the same objects after a failover; `wait_replicas`."""

from __future__ import annotations

import pytest
import redis

from forkq.engines.contract import Broker, Consumer, ResultBackend, ResultWrite, outgoing
from forkq.engines.redis.broker import RedisBroker
from forkq.engines.registry import open_backend, open_broker
from forkq.exceptions import BrokerUnavailable, NotReplicated
from forkq.states import SUCCESS
from tests.ports import server_port
from tests.redis_sentinel import SentinelGroup

pytestmark = pytest.mark.timeout(90)
Q = "sentinel"


def _finish_all(broker: Broker, backend: ResultBackend, count: int, tag: str) -> list[bytes]:
    session = broker.consumer(Consumer("w1", "w1/c1"), backend)
    deliveries = session.fetch([Q], count, 5.0)
    for n, delivery in enumerate(deliveries):
        session.finish(delivery, ResultWrite(f"{tag}-{n}", SUCCESS, delivery.body, 60))
    return [d.body for d in deliveries]


def test_publish_fetch_finish_and_results_through_the_sentinels(
    sentinel_group: SentinelGroup,
) -> None:
    dead = f"127.0.0.1:{server_port()}"  # a Sentinel down costs one refused connection
    url = sentinel_group.url(query="prefix=smoke").replace("://", f"://{dead},")
    broker, backend = open_broker(url), open_backend(url)
    try:
        broker.publish([outgoing(Q, b"one", 0), outgoing(Q, b"two", 9)])
        assert broker.size(Q) == 2
        session = broker.consumer(Consumer("w1", "w1/c1"), backend)
        assert session.joins_results  # result and ack in one round trip: one server
        assert _finish_all(broker, backend, 2, "t") == [b"two", b"one"]  # priority 9 first
        assert broker.size(Q) == 0
        stored = backend.wait("t-1", 1.0)
        assert stored is not None and (stored.state, stored.payload) == (SUCCESS, b"one")
    finally:
        broker.close()
        backend.close()


@pytest.mark.slow
def test_the_same_broker_and_backend_follow_a_failover(sentinel_group: SentinelGroup) -> None:
    """Published with WAIT (so on the replica), then the primary killed: once the Sentinels
    name the replica, the objects opened before carry on there, their scripts loaded again."""
    url = sentinel_group.url(query="prefix=failover&wait_replicas=1")
    broker, backend = open_broker(url), open_backend(url)
    try:
        broker.publish([outgoing(Q, f"m{n}".encode(), 0) for n in range(4)])
        assert _finish_all(broker, backend, 1, "before") == [b"m0"]
        sentinel_group.kill_primary()
        with pytest.raises(BrokerUnavailable):  # the old primary is gone; no new one yet
            broker.publish([outgoing(Q, b"lost?", 0)])
        took = sentinel_group.wait_for_failover()
        print(f"\nthe Sentinels named the replica primary {took:.2f} s after the kill")
        assert broker.size(Q) == 3
        with redis.Redis(port=sentinel_group.replica.port) as promoted:
            promoted.script_flush()  # whether or not it had them: fetch.lua is loaded again
        assert _finish_all(broker, backend, 3, "after") == [b"m1", b"m2", b"m3"]
        with pytest.raises(NotReplicated, match="only 0 of 1"):  # no replica is left
            broker.publish([outgoing(Q, b"m4", 0)])
        assert _finish_all(broker, backend, 1, "later") == [b"m4"]
        stored = backend.get("before-0")
        assert stored is not None and stored.payload == b"m0"  # replicated with its ack
        assert broker.size(Q) == 0
    finally:
        broker.close()
        backend.close()


def test_wait_replicas_publishes_once_the_replica_has_it(sentinel_group: SentinelGroup) -> None:
    replica = f"redis://127.0.0.1:{sentinel_group.replica.port}/0?prefix=waited"
    waited = open_broker(sentinel_group.url(query="prefix=waited&wait_replicas=1"))
    too_many = open_broker(
        sentinel_group.url(query="prefix=waited&wait_replicas=2&wait_timeout=0.2")
    )
    on_replica = RedisBroker(replica)
    try:
        waited.publish([outgoing(Q, b"one", 0)])
        waited.publish([outgoing(Q, b"two", 0), outgoing(Q, b"three", 0, delay=60)])
        assert on_replica.size(Q) == 3  # WAIT returned: the replica has them all
        with pytest.raises(NotReplicated, match="only 1 of 2 replicas"):
            too_many.publish([outgoing(Q, b"four", 0)])
        assert waited.size(Q) == 4  # queued all the same, as the error says
    finally:
        for broker in (waited, too_many, on_replica):
            broker.close()
