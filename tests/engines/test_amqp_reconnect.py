"""RabbitMQ: a client whose connection was dropped (a broker restart, a proxy or firewall
closing idle connections) reconnects once on its next call when that call can be repeated on
a new connection; a call on messages its old channel held fails once, and RabbitMQ
redelivers those messages.

The shared RabbitMQ is never restarted: the broker under test connects through a TCP proxy
in this process (tests/proxy.py), and `cut()` closes its connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from forkq.engines.contract import (
    Broker,
    Consumer,
    ConsumerSession,
    Delivery,
    ResultWrite,
    outgoing,
)
from forkq.engines.registry import open_backend, open_broker
from forkq.exceptions import BrokerError
from forkq.states import SUCCESS
from tests.conftest import amqp_test_url, engine_url
from tests.proxy import Proxy

pytestmark = pytest.mark.timeout(60)

CHILD = Consumer("w", "w/0/1")


RESULTS = open_backend("memory://amqp-reconnect")


def session(broker: Broker, consumer: Consumer = CHILD) -> ConsumerSession:
    return broker.consumer(consumer, RESULTS)


@pytest.fixture
def url() -> Iterator[str]:
    yield from engine_url("amqp", amqp_test_url())


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    with Proxy(5672) as running:
        yield running


@pytest.fixture
def direct(url: str) -> Iterator[Broker]:
    """A broker connected straight to RabbitMQ: one message ready in "q", one dead letter."""
    broker = open_broker(url)
    broker.publish([outgoing("q", b"dead"), outgoing("q", b"ready")])
    other = session(broker, Consumer("d", "d/0/1"))
    (dead,) = other.fetch(["q"], 1, 0)
    other.dead_letter(dead, "for the test")
    yield broker
    broker.close()


@pytest.fixture
def proxied(url: str, proxy: Proxy, direct: Broker) -> Iterator[Broker]:
    broker = open_broker(proxy.url(url))
    yield broker
    broker.close()


def cut(proxy: Proxy, broker: Broker) -> None:
    """Open the broker's connection (with a call of its own), then drop it under it."""
    broker.size("q")
    assert proxy.cut() == 1


def fetch_all(broker: Broker, consumer: Consumer, count: int) -> list[Delivery]:
    got: list[Delivery] = []
    for _ in range(10):
        got += session(broker, consumer).fetch(["q"], count - len(got), 2.0)
        if len(got) == count:
            break
    return got


# Each call, made on a dropped connection, and what it must then have done.
REPEATED: dict[str, Callable[[Broker, Broker], None]] = {
    "publish": lambda b, d: (b.publish([outgoing("q", b"new")]), d.size("q") == 2)[1],
    "publish_many": lambda b, d: (b.publish([outgoing("q", b"n")] * 2), d.size("q") == 3)[1],
    "publish_delayed": lambda b, d: (
        b.publish([outgoing("q", b"later", delay=60)]),
        d.size("q") == 1,
    )[1],
    "size": lambda b, d: b.size("q") == 1,
    "purge": lambda b, d: b.purge("q") == 1 and d.size("q") == 0,
    "dead_letters": lambda b, d: [x.reason for x in b.dead_letters()] == ["for the test"],
    "requeue_dead": lambda b, d: b.requeue_dead() == 1 and d.size("q") == 2,
    "purge_dead": lambda b, d: b.purge_dead() == 1 and d.dead_letters() == [],
    "heartbeat": lambda b, d: b.heartbeat("w") is None,
}


@pytest.mark.parametrize("call", sorted(REPEATED))
def test_a_call_on_a_dropped_connection_reconnects_once(
    call: str, proxy: Proxy, proxied: Broker, direct: Broker
) -> None:
    cut(proxy, proxied)
    assert REPEATED[call](proxied, direct)
    assert proxied.size("q") == direct.size("q")  # and the new connection stays usable


def test_a_broker_that_cannot_connect_again_fails_without_retrying_forever(
    proxy: Proxy, proxied: Broker
) -> None:
    cut(proxy, proxied)
    proxy.close()  # nothing listens on its port now
    with pytest.raises(BrokerError, match="connection"):
        proxied.size("q")
    assert proxy.accepted == 1


def finish_kept(held: ConsumerSession, delivery: Delivery) -> None:
    held.finish(delivery, None)
    held.flush()


SETTLE: dict[str, Callable[[ConsumerSession, Delivery], None]] = {
    "finish": lambda s, d: s.finish(d, ResultWrite("t", SUCCESS, b"r", 60)),
    "finish_kept": finish_kept,
    "requeue": lambda s, d: s.requeue(d),
    "dead_letter": lambda s, d: s.dead_letter(d, "no"),
    "stop_fetching": lambda s, d: s.stop_fetching(),
    "release": lambda s, d: (s.release([d.receipt]), None)[1],
}


@pytest.mark.parametrize("call", sorted(SETTLE))
def test_settling_a_message_held_on_a_dropped_connection_fails_and_it_comes_back(
    call: str, proxy: Proxy, proxied: Broker, direct: Broker
) -> None:
    """The delivery tag belongs to the channel that died: RabbitMQ has put the message back,
    and settling it on a new connection would settle nothing (or another message). So with
    the consumer: it died with the connection, there is nothing to cancel or release."""
    (held,) = fetch_all(proxied, CHILD, 1)
    assert proxy.cut() == 1
    with pytest.raises(BrokerError, match="connection"):
        SETTLE[call](session(proxied), held)
    (again,) = fetch_all(direct, Consumer("o", "o/0/1"), 1)
    assert again.body == held.body == b"ready"
    assert len(direct.dead_letters()) == 1  # only the fixture's


def test_a_fetch_on_a_dropped_connection_fails_once_then_fetches_again(
    proxy: Proxy, proxied: Broker
) -> None:
    """The consumer's session (its channel, what it was pushed, its kept acks) died with the
    connection: the child's loop, not the engine, decides to fetch again (and backs off)."""
    cut(proxy, proxied)
    with pytest.raises(BrokerError, match="connection"):
        session(proxied).fetch(["q"], 1, 1.0)
    assert [d.body for d in fetch_all(proxied, CHILD, 1)] == [b"ready"]


def test_the_proxy_delays_what_it_forwards(proxy: Proxy, proxied: Broker) -> None:
    """tests/proxy.py's other knob, for tests of slow links: each chunk waits `delay`."""
    proxied.size("q")
    proxy.delay = 0.3
    started = time.monotonic()
    assert proxied.size("q") == 1
    assert time.monotonic() - started >= 0.3 * 2  # the request, then the reply


def test_a_kept_ack_whose_channel_died_is_dropped_and_its_message_comes_back(
    proxy: Proxy, proxied: Broker
) -> None:
    """RabbitMQ put the message back when the connection dropped: the ack kept for it is never
    sent on the new connection, whose tags name other messages."""
    (held,) = fetch_all(proxied, CHILD, 1)
    session(proxied).finish(held, None)  # kept
    assert proxy.cut() == 1
    with pytest.raises(BrokerError, match="connection"):
        session(proxied).fetch(["q"], 1, 1.0)
    assert session(proxied).kept_acks() == [("q", held.receipt)]  # a failed call keeps them
    (again,) = fetch_all(proxied, CHILD, 1)
    assert (again.body, again.returned) == (b"ready", True)
    assert session(proxied).kept_acks() == []
    assert proxied.size("q") == 1  # held again, not acked
