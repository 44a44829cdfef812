"""Whether a consumer still holds a delivery (`ConsumerSession.still_holds`), asked by a child
before it starts a message and before it stores or acks its outcome: false once a lease
engine gave the message to another worker (its holder's worker silent past lease_ttl, as a
worker cut off from the network is), or once the consumer let it go. One suite for every
broker, as test_conformance.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from forkq.engines.contract import Broker, Recovery
from forkq.engines.registry import open_broker
from tests.conftest import amqp_test_url, engine_url
from tests.engines.test_conformance import BROKERS, Q, put, session
from tests.proxy import Proxy


@pytest.fixture(params=sorted(BROKERS))
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    for url in engine_url(request.param, BROKERS[request.param](tmp_path)):
        b = open_broker(url)
        yield b
        b.close()


def test_a_delivery_taken_over_from_a_silent_worker_is_no_longer_held(broker: Broker) -> None:
    if broker.capabilities.recovery is not Recovery.LEASE:
        pytest.skip("RabbitMQ takes a message back only with its channel")
    put(broker, Q, b"x")
    [stale] = session(broker, "c", worker="cut-off").fetch([Q], 1, 0)
    assert session(broker, "c", worker="cut-off").still_holds(stale)  # held < half a lease
    [newer] = session(broker, "c", worker="alive").fetch([Q], 1, broker.lease_ttl * 5)
    assert newer.body == b"x"
    assert time.monotonic() - stale.held_since >= broker.lease_ttl  # so the stale one asks
    assert not session(broker, "c", worker="cut-off").still_holds(stale)
    asked = msgspec.structs.replace(newer, held_since=0.0)  # held for ever: it asks too
    assert session(broker, "c", worker="alive").still_holds(asked)


def test_a_young_hold_is_trusted_without_asking(broker: Broker) -> None:
    put(broker, Q, b"x")
    [held] = session(broker).fetch([Q], 1, 5.0)
    assert 0 < held.held_since <= time.monotonic()
    old = msgspec.structs.replace(held, held_since=0.0)
    assert session(broker).still_holds(old)
    session(broker).release()
    assert not session(broker).still_holds(old)  # asked: it went back
    trusted = session(broker).unchallenged_for > 0  # half the lease; RabbitMQ: 1 s
    assert session(broker).still_holds(held) is trusted


def test_a_delivery_whose_rabbitmq_connection_died_is_no_longer_held() -> None:
    """RabbitMQ took it back with the connection (closed while this worker was cut off, past
    its heartbeats): this process learns it only when it next speaks, and `still_holds`
    speaks (one basic.qos). No error: the next fetch opens a new connection and gets it."""
    for url in engine_url("amqp", amqp_test_url()):
        with Proxy(5672) as proxy:
            broker = open_broker(proxy.url(url))
            try:
                put(broker, Q, b"x")
                [held] = session(broker).fetch([Q], 1, 5.0)
                assert session(broker).still_holds(msgspec.structs.replace(held, held_since=0.0))
                assert proxy.cut() == 1
                assert not session(broker).still_holds(
                    msgspec.structs.replace(held, held_since=0.0)
                )
                [again] = session(broker).fetch([Q], 1, 5.0)
                assert again.body == b"x" and again.returned
            finally:
                broker.close()
