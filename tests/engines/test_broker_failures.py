"""Which kind of failure an engine reports: a connection problem (`BrokerUnavailable`,
`BackendUnavailable`: an outage, ridden out) or anything else (`BrokerError`, `BackendError`:
logged as an error naming what failed, never as "unreachable")."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from forkq import Forkq
from forkq.engines.contract import Consumer
from forkq.engines.redis.client import unreachable
from forkq.engines.redis.keys import QueueKeys, result_key
from forkq.engines.registry import open_backend, open_broker
from forkq.engines.sqlite.file import driver_errors_as
from forkq.exceptions import (
    BackendError,
    BackendUnavailable,
    BrokerError,
    BrokerUnavailable,
    Unavailable,
)
from forkq.outage import Outage
from tests.conftest import (
    REDIS,
    amqp_test_url,
    engine_url,
    redis_test_url,
    server_port,
    wait_until_serving,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def broker_url() -> Iterator[str]:
    yield from engine_url("redis", redis_test_url())


def _wrong_type(url: str, queue: str) -> str:
    """Makes the queue's delayed set a string: every fetch script call fails (WRONGTYPE)."""
    key = QueueKeys(url.split("prefix=")[1], queue).delayed
    redis.Redis.from_url(REDIS).set(key, "not a sorted set")
    return key


def test_redis_connection_problems_are_unavailable_and_error_replies_are_not(
    broker_url: str,
) -> None:
    nowhere = f"redis://127.0.0.1:{server_port()}/0?socket_connect_timeout=1"
    broker, backend = open_broker(nowhere), open_backend(nowhere)
    with pytest.raises(BrokerUnavailable):
        broker.size("q")
    with pytest.raises(BackendUnavailable):
        backend.get("t")

    _wrong_type(broker_url, "q")
    broker, backend = open_broker(broker_url), open_backend(broker_url)
    holder = broker.consumer(Consumer("w", "w/0"), backend)
    with pytest.raises(BrokerError) as failed:
        holder.fetch(["q"], 1, 0)
    assert not isinstance(failed.value, Unavailable)
    assert "WRONGTYPE" in str(failed.value)
    redis.Redis.from_url(REDIS).set(f"{{{broker_url.split('prefix=')[1]}:t}}:ready", "x")
    with pytest.raises(BackendError) as failed_too:
        backend.wait("t", 0.1)  # BLPOP on a string
    assert not isinstance(failed_too.value, Unavailable)
    broker.close()
    backend.close()


def test_sqlite_busy_is_unavailable_and_a_type_error_is_not(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0)
    with pytest.raises(BrokerUnavailable), driver_errors_as(BrokerError, "sqlite broker"):
        other.execute("SELECT * FROM t")
    with pytest.raises(BackendUnavailable), driver_errors_as(BackendError, "sqlite backend"):
        other.execute("SELECT * FROM t")
    with pytest.raises(BrokerError) as failed, driver_errors_as(BrokerError, "sqlite broker"):
        holder.execute("INSERT INTO t VALUES (?)", (object(),))
    assert not isinstance(failed.value, Unavailable)
    holder.close()
    other.close()


def test_rabbitmq_with_no_server_is_unavailable() -> None:
    broker = open_broker(f"amqp://guest:guest@127.0.0.1:{server_port()}/%2F")
    with pytest.raises(BrokerUnavailable):
        broker.size("q")


@pytest.fixture
def amqp_url() -> Iterator[str]:
    yield from engine_url("amqp", amqp_test_url())


def test_rabbitmq_refusing_a_login_is_no_outage(amqp_url: str) -> None:
    broker = open_broker(amqp_url.replace("guest:guest@", "guest:not-the-password@"))
    with pytest.raises(BrokerError) as failed:
        broker.size("q")
    assert "refused the login of user 'guest': wrong user name or password" in str(failed.value)
    assert type(failed.value) is BrokerError  # not an outage (Unavailable) to be waited out


@pytest.mark.parametrize(
    "reply",
    [
        redis.exceptions.ReadOnlyError("READONLY You can't write against a read only replica."),
        redis.exceptions.MasterDownError("MASTERDOWN Link with MASTER is down"),
        redis.exceptions.TryAgainError("TRYAGAIN"),
    ],
)
def test_redis_replies_of_a_failover_are_unavailable(broker_url: str, reply: Exception) -> None:
    """What a server answers while a failover is under way passes like an outage; `get()`
    rides it out instead of raising."""
    assert unreachable(reply)  # type: ignore[arg-type]
    assert not unreachable(redis.ResponseError("WRONGTYPE Operation against a key"))


def test_outage_wording_follows_the_kind(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.outage")
    outage = Outage("broker", log)
    with caplog.at_level(logging.WARNING, "test.outage"):
        outage.failed(BrokerError("redis broker: script failed"))
        outage.failed(BrokerError("redis broker: script failed"))  # once per failure, not try
        outage.failed(BrokerUnavailable("redis broker: connection refused"))  # a new kind
        outage.succeeded()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", "broker failed: redis broker: script failed; retrying with back-off"),
        (
            "WARNING",
            "broker unreachable (redis broker: connection refused); retrying with back-off",
        ),
        ("WARNING", caplog.records[-1].getMessage()),
    ]
    assert caplog.records[-1].getMessage().startswith("broker reachable again after ")


@pytest.mark.slow
def test_a_script_error_in_a_worker_is_an_error_not_an_outage(
    client: Forkq, start_worker: Any, broker_url: str
) -> None:
    worker = start_worker("-c", "1", "-l", "warning")
    wait_until_serving(client, worker)
    key = _wrong_type(broker_url, client.settings.default_queue)
    worker.wait_for_log("broker failed: redis broker: WRONGTYPE")
    redis.Redis.from_url(REDIS).delete(key)
    assert client.send_task("e2eapp.add", (1, 2)).get(timeout=30) == 3
    worker.wait_for_log("broker working again after")
    assert "unreachable (redis broker: WRONGTYPE" not in worker.log()


def test_get_raises_a_backend_failure_that_is_not_an_outage_at_once(broker_url: str) -> None:
    """Waiting out an outage is right; waiting out a reply that will never change (here a
    result key of the wrong type) would make `get()` without a timeout hang for ever."""
    app = Forkq("t", broker=broker_url)
    task_id = "wrong-type-result"
    prefix = broker_url.split("prefix=")[1]
    redis.Redis.from_url(REDIS).lpush(result_key(prefix, task_id), "x")
    with pytest.raises(BackendError, match="WRONGTYPE") as failed:
        app.AsyncResult(task_id).get(timeout=None)
    assert not isinstance(failed.value, Unavailable)
    app.close()
