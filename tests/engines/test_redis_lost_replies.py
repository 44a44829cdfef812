"""Redis replies that never arrive: a fetch the server ran but whose reply was lost, and
blocking reads that outlast the client's read timeout (redis-py 8 reads with a 5 s one)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from forkq.engines.contract import Consumer, outgoing
from forkq.engines.redis.broker import RedisBroker
from forkq.engines.registry import open_backend, open_broker
from forkq.exceptions import BrokerError
from tests.conftest import engine_url, redis_test_url

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def url() -> Iterator[str]:
    yield from engine_url("redis", redis_test_url(socket_timeout=0.5))


def _lose_the_next_reply(broker: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server runs the next fetch script, then the connection drops before its reply."""
    wire = broker._link.wire
    run = wire.script

    def lost(*args: Any) -> Any:
        monkeypatch.setattr(wire, "script", run)  # this reply only
        run(*args)
        raise redis.ConnectionError("Connection reset by peer")

    monkeypatch.setattr(wire, "script", lost)


def test_entries_a_lost_fetch_delivered_come_with_the_next_fetch(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Otherwise they would stay pending for the consumer, unknown to it, until its worker
    died."""
    broker, backend = open_broker(url), open_backend(url)
    assert isinstance(broker, RedisBroker)
    holder = broker.consumer(Consumer("w", "w/0"), backend)
    broker.publish([outgoing("q", str(n).encode()) for n in range(3)])
    _lose_the_next_reply(broker, monkeypatch)
    with pytest.raises(BrokerError):
        holder.fetch(["q"], 3, 0)

    first = holder.fetch(["q"], 2, 0)  # two of the three it holds
    for delivery in first:
        holder.finish(delivery, None)
    second = holder.fetch(["q"], 2, 0)  # the third: it may have held more than two
    for delivery in second:
        holder.finish(delivery, None)

    assert sorted(d.body for d in first + second) == [b"0", b"1", b"2"]
    assert all(d.delivery_count == 1 for d in first + second)  # none of them had started
    assert holder.fetch(["q"], 2, 0) == []  # finished: not read again
    broker.publish([outgoing("q", b"3")])
    assert [d.body for d in holder.fetch(["q"], 2, 0)] == [b"3"]
    broker.close()
    backend.close()


def test_a_blocking_fetch_outlasts_the_read_timeout(url: str) -> None:
    """A fetch may wait longer than the client's read timeout (0.5 s here) without failing,
    and takes what arrives meanwhile."""
    broker = open_broker(url)
    holder = broker.consumer(Consumer("w", "w/0"), open_backend("memory://lost-replies"))
    started = time.monotonic()
    assert holder.fetch(["q"], 1, 1.5) == []
    assert time.monotonic() - started >= 1.4
    broker.close()


def test_waiting_for_a_result_outlasts_the_read_timeout(url: str) -> None:
    backend = open_backend(url)
    started = time.monotonic()
    assert backend.wait("never-stored", 1.5) is None
    assert time.monotonic() - started >= 1.4
    backend.close()
