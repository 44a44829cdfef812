"""The Redis consumer session: when a result and its ack share one round trip, and the acks it
keeps back going out with every other settle, so that no call overtakes them."""

from __future__ import annotations

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
from forkq.engines.redis.broker import RedisBroker
from forkq.engines.redis.keys import Receipt
from forkq.engines.registry import open_backend, open_broker
from forkq.states import SUCCESS
from tests.conftest import engine_url, redis_test_url

HOLDER = Consumer("w", "w/0")


@pytest.fixture
def url() -> Iterator[str]:
    yield from engine_url("redis", redis_test_url())


@pytest.fixture
def broker(url: str) -> Iterator[Broker]:
    opened = open_broker(url)
    assert isinstance(opened, RedisBroker)
    yield opened
    opened.close()


@pytest.fixture
def observer(url: str) -> Iterator[Broker]:
    """Another connection, with no session to flush: its `size` shows what was sent."""
    opened = open_broker(url)
    yield opened
    opened.close()


def test_results_join_the_ack_only_on_the_brokers_own_server_and_database(
    url: str, broker: Broker
) -> None:
    other_db = url.replace("/15?", "/14?")
    assert other_db != url
    for n, (backend_url, joins) in enumerate(
        [(url, True), ("memory://joins", False), (other_db, False)]
    ):
        backend = open_backend(backend_url)
        session = broker.consumer(Consumer("w", f"w/{n}"), backend)
        assert session.joins_results is joins, backend_url
        backend.close()


def _two_held(broker: Broker, backend_url: str) -> tuple[ConsumerSession, Delivery, Delivery]:
    broker.publish([outgoing("q", b"a"), outgoing("q", b"b")])
    session = broker.consumer(HOLDER, open_backend(backend_url))
    first, second = session.fetch(["q"], 2, 0)
    return session, first, second


@pytest.mark.parametrize("joined", [True, False], ids=["results-on-redis", "results-elsewhere"])
def test_a_finish_with_a_result_sends_the_kept_acks_with_its_own(
    url: str, joined: bool, broker: Broker, observer: Broker
) -> None:
    session, first, second = _two_held(broker, url if joined else "memory://kept-acks")
    assert session.joins_results is joined
    session.finish(first, None)  # its ack kept back
    assert session.kept_acks() == [("q", first.receipt)]
    assert observer.size("q") == 2
    session.finish(second, ResultWrite("t-1", SUCCESS, b"r", 60))
    assert session.kept_acks() == []
    assert observer.size("q") == 0  # both acked, without another call of the session


SETTLES: dict[str, Callable[[ConsumerSession, Delivery], None]] = {
    "requeue": lambda session, d: session.requeue(d),
    "dead_letter": lambda session, d: session.dead_letter(d, "given up"),
}


@pytest.mark.parametrize("settle", SETTLES.values(), ids=SETTLES.keys())
def test_a_requeue_or_dead_letter_sends_the_kept_acks_first(
    settle: Callable[[ConsumerSession, Delivery], None], broker: Broker, observer: Broker
) -> None:
    session, first, second = _two_held(broker, "memory://kept-acks")
    session.finish(first, None)
    settle(session, second)
    assert session.kept_acks() == []
    assert observer.size("q") + len(observer.dead_letters("q")) == 1  # only the second is left


def test_a_receipt_names_the_band_and_the_entry(broker: Broker) -> None:
    broker.publish([outgoing("q", b"top", priority=9), outgoing("q", b"low")])
    top, low = broker.consumer(HOLDER, open_backend("memory://receipts")).fetch(["q"], 2, 0)
    assert (Receipt.of(top.receipt).band, Receipt.of(low.receipt).band) == (3, 0)
    entry_id = Receipt.of(top.receipt).entry_id  # a stream id: "<ms>-<seq>"
    assert entry_id.count("-") == 1 and str(Receipt.of(top.receipt)) == top.receipt
