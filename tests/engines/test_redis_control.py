"""Control on Redis past a dropped connection: a client's inbox, kept between requests, is
subscribed again before the next request goes out, and an agent's subscription comes back."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis
from redis.client import PubSub

from forkq.engines.redis.control import RedisControl
from forkq.engines.registry import open_broker
from forkq.exceptions import BrokerUnavailable
from tests.conftest import REDIS, engine_url, redis_test_url

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def url() -> Iterator[str]:
    yield from engine_url("redis", redis_test_url())


def kill(sub: PubSub | None) -> None:
    """Close the server's end of this subscription's connection (only this one)."""
    assert sub is not None and sub.connection is not None
    host, port = sub.connection._sock.getsockname()[:2]
    server = redis.Redis.from_url(REDIS)
    assert server.client_kill_filter(_type=None, addr=f"{host}:{port}") == 1
    server.close()


def test_a_dropped_inbox_or_subscription_is_renewed(url: str) -> None:
    agent = open_broker(url).control_channel(None)
    client = open_broker(url).control_channel(None)
    assert isinstance(agent, RedisControl) and isinstance(client, RedisControl)
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
        kill(client._inbox_sub)
        assert list(client.ask("ping", timeout=10).replies) == ["w1"]  # no reply lost
        kill(agent._requests_sub)  # while the agent waits on it
        got = client.ask("ping", timeout=1.0)
        if got.missing:  # the request crossed the agent's reconnection: the next one arrives
            got = client.ask("ping", timeout=10)
        assert list(got.replies) == ["w1"]
    finally:
        stop.set()
        thread.join(timeout=10)
        agent.close()
        client.close()
