"""A Redis broker whose server is over `maxmemory` with `noeviction` (Redis refuses writes that
may grow memory): publish raises `BrokerFull` and writes nothing; what is queued is still
delivered, settled and released; a result is never half-written with its ack; an evicting
policy is warned of. Each test on a private redis-server of 2 MB, filled until it refuses, its
maxmemory then lowered below what it uses (`fill`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from forkq.engines.contract import Consumer, ResultWrite, outgoing
from forkq.engines.redis.broker import RedisBroker
from forkq.engines.redis.keys import GROUP, QueueKeys, worker_key
from forkq.engines.registry import open_backend, open_broker
from forkq.exceptions import BrokerFull, ServerFull, Unavailable
from forkq.states import SUCCESS
from tests.redis_servers import PrivateRedis, need_programs, running

pytestmark = pytest.mark.timeout(60)

MAXMEMORY = "2mb"
FULL = ("--maxmemory", MAXMEMORY, "--maxmemory-policy", "noeviction", "--appendonly", "no")
HOLDER = Consumer("w", "w/0")
FILLER = "filler:"  # the test's own keys, outside forkq's prefix


def fill(client: redis.Redis, over: int = 200_000) -> None:
    """SETs of 20 KB until the server refuses one, then its maxmemory lowered to `over` bytes
    below what it uses: over maxmemory by a margin that the frees of a test's acks, expiries
    and closed connections do not undo, until `free`."""
    for n in range(10_000):
        try:
            client.set(f"{FILLER}{n}", b"x" * 20_000)
        except redis.exceptions.OutOfMemoryError:
            break
    used = int(client.info("memory")["used_memory"])
    assert n > 0, f"full before it was filled: {used} bytes used"
    client.config_set("maxmemory", used - over)


def free(client: redis.Redis) -> None:
    keys = list(client.scan_iter(f"{FILLER}*", count=1000))
    client.delete(*keys)
    client.config_set("maxmemory", MAXMEMORY)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateRedis]:
    need_programs("redis-server")
    with running(PrivateRedis(tmp_path, extra=FULL)) as started:
        yield started


@pytest.fixture
def client(server: PrivateRedis) -> Iterator[redis.Redis]:
    made = redis.Redis.from_url(server.url)
    yield made
    made.close()


@pytest.fixture
def broker(server: PrivateRedis) -> Iterator[RedisBroker]:
    opened = open_broker(server.url)
    assert isinstance(opened, RedisBroker)
    yield opened
    opened.close()


def pending(client: redis.Redis, queue: str) -> int:
    return sum(
        int(client.xpending(band, GROUP)["pending"])
        for band in QueueKeys("forkq", queue).bands_high_first
        if client.exists(band)
    )


def test_a_publish_to_a_full_server_raises_broker_full_and_writes_nothing(
    broker: RedisBroker, client: redis.Redis
) -> None:
    broker.publish([outgoing("q", b"before")])
    fill(client)
    calls = {
        "one due now": [outgoing("q", b"one")],
        "one delayed": [outgoing("q", b"later", delay=60)],
        "a batch": [outgoing("q", b"a"), outgoing("q", b"b", priority=9), outgoing("q", b"c", 5)],
    }
    for what, messages in calls.items():
        with pytest.raises(BrokerFull) as raised:
            broker.publish(messages)
        error = raised.value
        assert isinstance(error, ServerFull) and not isinstance(error, Unavailable), what
        text = str(error)
        assert "out of memory" in text and "maxmemory" in text and "noeviction" in text, text
        assert "CONFIG SET maxmemory" in text  # the fix, named
    depth = broker.depth("q")
    assert (depth.messages, depth.delayed) == (1, 0)  # only the one before, whole
    free(client)
    broker.publish([outgoing("q", b"a"), outgoing("q", b"b")])  # room again: it works
    assert broker.depth("q").messages == 3


def test_a_result_and_its_ack_are_refused_together_on_a_full_server(
    server: PrivateRedis, broker: RedisBroker, client: redis.Redis
) -> None:
    """The result write (refused over maxmemory) and the ack (which Redis would let through:
    it frees) go in one transaction: no message acked without its result."""
    broker.publish([outgoing("q", b"a"), outgoing("q", b"b")])
    backend = open_backend(server.url)
    session = broker.consumer(HOLDER, backend)
    assert session.joins_results
    first, second = session.fetch(["q"], 2, 0)
    fill(client)
    with pytest.raises(BrokerFull):
        session.finish(first, ResultWrite("t-1", SUCCESS, b"r" * 100, 60))
    assert backend.get("t-1") is None
    assert pending(client, "q") == 2 and broker.size("q") == 2  # still held, nothing acked
    session.finish(second, None)  # an ack alone goes through: it frees memory
    session.flush()
    assert pending(client, "q") == 1
    free(client)
    session.finish(first, ResultWrite("t-1", SUCCESS, b"r" * 100, 60))
    stored = backend.get("t-1")
    assert stored is not None and stored.state == SUCCESS
    assert pending(client, "q") == 0 and broker.size("q") == 0
    backend.close()


def test_a_full_server_still_delivers_settles_and_releases_what_is_queued(
    server: PrivateRedis, broker: RedisBroker, client: redis.Redis
) -> None:
    broker.publish([outgoing("q", f"m{i}".encode()) for i in range(6)])
    broker.publish([outgoing("q", b"delayed", delay=0.05)])  # due by the time it is fetched
    time.sleep(0.1)  # the delayed message's due time: a clock, not an event
    fill(client)
    fresh = open_broker(server.url)  # a child forked now: its queues not made by it yet
    backend = open_backend("memory://full")
    session = fresh.consumer(HOLDER, backend)
    got = session.fetch(["q"], 10, 0)
    assert sorted(d.body for d in got) == [f"m{i}".encode() for i in range(6)]
    assert fresh.depth("q").delayed == 1  # could not move for want of memory: kept, not lost
    session.requeue(got[0])  # settle.lua: a move, through on a full server
    session.dead_letter(got[1], "given up")
    assert session.release() == 4  # release.lua, the same
    session.finish(session.fetch(["q"], 10, 0)[0], None)
    session.flush()
    assert broker.depth("q").messages == 4 + 1  # the 4 still held, and the delayed one
    assert [d.body for d in broker.dead_letters("q")] == [got[1].body]
    assert pending(client, "q") == 4  # the rest of what the second fetch took, held
    session.release()
    free(client)
    bodies = sorted(d.body for d in session.fetch(["q"], 10, 0))
    assert len(bodies) == 5 and b"delayed" in bodies  # moved once there was room
    assert len(set(bodies)) == 5  # none twice: 7 published, 1 dead-lettered, 1 finished
    fresh.close()


def test_the_heartbeat_keeps_the_workers_key_alive_on_a_full_server(
    server: PrivateRedis, client: redis.Redis
) -> None:
    """Else the worker's holds would be taken for a dead worker's after lease_ttl."""
    broker = open_broker(server.url + "?lease_ttl=30")
    broker.heartbeat("w1", ["q"])
    client.pexpire(worker_key("forkq", "w1"), 1000)
    fill(client)
    with pytest.raises(BrokerFull):
        broker.heartbeat("w1", ["q"])  # said, loudly
    assert int(client.pttl(worker_key("forkq", "w1"))) > 20_000  # yet renewed
    broker.close()


@pytest.mark.parametrize(
    ("policy", "says"),
    [
        ("noeviction", None),
        ("allkeys-lru", "a queue's streams and delayed set"),
        ("volatile-ttl", "a worker's liveness key"),
    ],
)
def test_an_evicting_policy_is_warned_of(
    broker: RedisBroker, client: redis.Redis, policy: str, says: str | None
) -> None:
    client.config_set("maxmemory-policy", policy)
    warnings = broker.server_warnings()
    if says is None:
        assert warnings == []
        return
    [warning] = warnings
    assert f"maxmemory-policy is {policy}" in warning and says in warning, warning
    assert "noeviction" in warning  # what to use instead


def test_a_server_that_hides_its_info_is_not_warned_of(tmp_path: Path) -> None:
    need_programs("redis-server")
    hidden = (*FULL, "--rename-command", "INFO", "")
    with running(PrivateRedis(tmp_path, extra=hidden)) as server:
        broker = open_broker(server.url)
        assert broker.server_warnings() == []  # said at debug level only
        broker.close()
