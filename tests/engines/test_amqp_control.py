"""Control on RabbitMQ past a dropped connection (the shared server is never touched: the
channels connect through a TCP proxy in this process, tests/proxy.py): a client's next
request goes out on a new connection, and an agent subscribes again after its back-off."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from forkq.engines.registry import open_broker
from forkq.exceptions import BrokerUnavailable
from tests.conftest import amqp_test_url, engine_url
from tests.proxy import Proxy

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def url() -> Iterator[str]:
    yield from engine_url("amqp", amqp_test_url())


def test_a_dropped_connection_is_opened_again(url: str) -> None:
    with Proxy(5672) as proxy:
        agent = open_broker(proxy.url(url)).control_channel(None)
        client = open_broker(proxy.url(url)).control_channel(None)
        assert agent is not None and client is not None
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
            assert proxy.cut() >= 2  # both channels' connections
            got = client.ask("ping", timeout=1.0)
            if got.missing:  # the request crossed the agent's new subscription: the next one
                got = client.ask("ping", timeout=10)
            assert list(got.replies) == ["w1"]
        finally:
            stop.set()
            thread.join(timeout=10)
            agent.close()
            client.close()
