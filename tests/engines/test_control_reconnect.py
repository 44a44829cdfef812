"""Control past a dropped connection, on Redis and on RabbitMQ: a client's next request gets
every reply, and an agent's subscription comes back after its back-off.

What is dropped, and how, is each engine's (the shared servers are never touched):
- Redis: the server closes one subscription's connection (CLIENT KILL of that address only),
  first the client's inbox, kept between requests (subscribed again before the next request
  goes out: no reply lost), then the agent's requests, while the agent waits on them.
- RabbitMQ: both channels connect through a TCP proxy in this process (tests/proxy.py), which
  resets their connections at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import msgspec
import pytest
import redis
from redis.client import PubSub

from forkq.engines.contract.control import ControlChannel
from forkq.engines.redis.control import RedisControl
from forkq.engines.registry import open_broker
from forkq.exceptions import BrokerUnavailable
from tests.conftest import REDIS, amqp_test_url, engine_url, redis_test_url
from tests.proxy import Proxy

pytestmark = pytest.mark.timeout(60)


class Drop(msgspec.Struct, frozen=True):
    """One drop of connections; `agent`: the agent's own is among them, so a request sent
    while it subscribes again may be missed (the next one is not)."""

    drop: Callable[[], None]
    agent: bool


class Pair(msgspec.Struct, frozen=True):
    agent: ControlChannel
    client: ControlChannel
    drops: list[Drop]


def kill(sub: PubSub | None) -> None:
    """Close the server's end of this subscription's connection (only this one)."""
    assert sub is not None and sub.connection is not None
    host, port = sub.connection._sock.getsockname()[:2]
    server = redis.Redis.from_url(REDIS)
    assert server.client_kill_filter(_type=None, addr=f"{host}:{port}") == 1
    server.close()


def redis_pair(url: str) -> Iterator[Pair]:
    agent = open_broker(url).control_channel(None)
    client = open_broker(url).control_channel(None)
    assert isinstance(agent, RedisControl) and isinstance(client, RedisControl)
    drops = [
        Drop(lambda: kill(client._inbox_sub), agent=False),
        Drop(lambda: kill(agent._requests_sub), agent=True),
    ]
    yield Pair(agent, client, drops)


def amqp_pair(url: str) -> Iterator[Pair]:
    with Proxy(5672) as proxy:
        agent = open_broker(proxy.url(url)).control_channel(None)
        client = open_broker(proxy.url(url)).control_channel(None)
        assert agent is not None and client is not None

        def cut() -> None:
            assert proxy.cut() >= 2  # both channels' connections

        yield Pair(agent, client, [Drop(cut, agent=True)])


ENGINES = {"redis": (redis_test_url, redis_pair), "amqp": (amqp_test_url, amqp_pair)}


@pytest.fixture(params=sorted(ENGINES))
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    test_url, make = ENGINES[request.param]
    for url in engine_url(request.param, test_url()):
        yield from make(url)


def test_a_dropped_connection_is_opened_again(pair: Pair) -> None:
    agent, client = pair.agent, pair.client
    agent.listen("w1", "w1.1.aaaaaa")
    stop = threading.Event()

    def serve() -> None:  # as the agent's loop: an outage is waited out, never fatal
        while not stop.is_set():
            try:
                request = agent.receive(0.2)
            except BrokerUnavailable:
                continue
            if request is not None:
                agent.reply(request, {"pong": True})

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert list(client.ask("ping", timeout=10).replies) == ["w1"]
        for drop in pair.drops:
            drop.drop()
            got = client.ask("ping", timeout=1.0 if drop.agent else 10)
            if drop.agent and got.missing:  # it crossed the agent's new subscription
                got = client.ask("ping", timeout=10)
            assert list(got.replies) == ["w1"]  # the client's own drop loses no reply
    finally:
        stop.set()
        thread.join(timeout=10)
        agent.close()
        client.close()
