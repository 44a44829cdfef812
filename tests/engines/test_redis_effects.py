"""A Redis server that does not know forkq's scripts (new, restarted, or after SCRIPT FLUSH)
while a chord member finishes: the writes and messages of the MULTI/EXEC land, the scripts
answer NOSCRIPT and run again on their own, and the chord's body is published once. On a
private redis-server: SCRIPT FLUSH on the shared one would touch every other test's scripts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from forkq.engines.contract import Broker, Consumer, Effects, ResultBackend, outgoing
from forkq.engines.redis.results import vote_script
from forkq.engines.registry import open_backend, open_broker
from tests.engines.test_effects import BODY, Q, record, vote, write
from tests.redis_servers import PrivateRedis

pytestmark = pytest.mark.timeout(60)
HOLDER = Consumer("w", "w/0")


@pytest.fixture
def url(private_redis: PrivateRedis) -> str:
    return private_redis.url


@pytest.fixture
def engines(url: str) -> Iterator[tuple[Broker, ResultBackend, redis.Redis]]:
    broker, backend, admin = open_broker(url), open_backend(url), redis.Redis.from_url(url)
    yield broker, backend, admin
    admin.close()
    backend.close()
    broker.close()


def test_a_member_finished_on_a_server_without_the_scripts_publishes_the_body_once(
    engines: tuple[Broker, ResultBackend, redis.Redis],
) -> None:
    broker, backend, admin = engines
    broker.publish([outgoing(Q, b"m0"), outgoing(Q, b"m1"), outgoing(Q, b"m2")])
    session = broker.consumer(HOLDER, backend)
    assert session.atomic_effects
    held = session.fetch([Q], 3, 5.0)
    then = (outgoing(BODY, b"body"), outgoing(BODY, b"later", delay=0.2))
    for n, delivery in enumerate(held):
        admin.script_flush()
        if n == 2:  # the vote runs in the MULTI and fires; the acks' scripts answer NOSCRIPT
            admin.script_load(vote_script())
        effects = Effects(vote=vote(f"m{n}", then=then))
        session.finish(delivery, write(f"m{n}", payload=delivery.body), effects)
    assert [record(r) for r in backend.get_many(["m0", "m1", "m2"])] == [
        ("SUCCESS", b"m0"), ("SUCCESS", b"m1"), ("SUCCESS", b"m2"),
    ]  # fmt: skip
    assert broker.size(Q) == 0
    assert broker.size(BODY) == 2  # the body and the delayed one, once each
    reader = broker.consumer(Consumer("w", "w/reader"), backend)
    got = [d.body for d in reader.fetch([BODY], 10, 0)]
    got += [d.body for d in reader.fetch([BODY], 10, 5.0)]
    assert sorted(got) == [b"body", b"later"]


def test_a_vote_on_a_server_without_the_script_loads_it(
    engines: tuple[Broker, ResultBackend, redis.Redis],
) -> None:
    _, backend, admin = engines
    admin.script_flush()
    assert backend.vote([write("m0")], vote("m0", size=1)) is True
    assert record(backend.get("m0")) == ("SUCCESS", b"r")
    admin.script_flush()
    assert backend.vote([], vote("m0", size=1)) is True  # not marked done: fires again
