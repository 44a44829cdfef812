"""Redis with the URL users write (`redis://host:port/db`, no socket_timeout): redis-py 8 still
reads with a 5 s timeout, which its pool's settings do not show. Blocking reads must stay
under it, or an idle worker and a long `get()` report outages that are not there."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from forkq import Forkq
from forkq.engines.redis.broker import RedisBroker
from forkq.engines.redis.client import client_from_url, longest_block, read_timeout
from forkq.engines.registry import open_broker
from tests.conftest import engine_url, redis_test_url, wait_until_serving

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def broker_url() -> Iterator[str]:
    url = redis_test_url()
    assert "timeout" not in url  # only a prefix: the default path
    yield from engine_url("redis", url)


def test_blocking_reads_stay_under_the_timeout_connections_really_have(broker_url: str) -> None:
    for url in (broker_url, f"{broker_url}&socket_timeout=0.5"):
        client, _ = client_from_url(url)
        connection: Any = client.connection_pool.get_connection()
        try:
            assert read_timeout(client) == connection.socket_timeout  # 5 s, or the URL's
            assert 0 < longest_block(client) <= connection.socket_timeout - 0.25
        finally:
            client.connection_pool.release(connection)
            client.close()
    broker = open_broker(broker_url)
    assert isinstance(broker, RedisBroker)
    assert broker._link.longest_block == 4.0  # redis-py's 5 s, less a second
    broker.close()


@pytest.mark.slow
def test_an_idle_worker_logs_nothing(client: Forkq, start_worker: Any) -> None:
    """Before, it logged "broker unreachable (redis broker: Timeout reading from socket)"
    every 10-15 s and backed off. 60 s, as issue 14 asks: many read timeouts, fetch cycles
    and dead-worker checks."""
    worker = start_worker("-c", "2", "-l", "warning")
    wait_until_serving(client, worker)
    with pytest.raises(AssertionError, match="not printed"):
        worker.wait_for_log("forkq", timeout=60)  # any line at all, warning or worse
    assert worker.proc.poll() is None


@pytest.mark.slow
def test_waiting_7_s_for_a_result_logs_nothing(
    client: Forkq, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, `get()` on a task longer than 5 s logged "result backend unreachable"."""
    worker = start_worker("-c", "1", "-l", "warning")
    wait_until_serving(client, worker)
    with caplog.at_level(logging.WARNING, "forkq"):
        assert client.send_task("e2eapp.slow_add", (1, 2, 7)).get(timeout=30) == 3
    assert caplog.records == []
    assert "forkq" not in worker.log()
