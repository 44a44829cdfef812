"""Dead-letter caps where deployments made before them meet them: an SQLite file whose dead
letters were never counted, a RabbitMQ dead-letter queue declared without the caps (RabbitMQ
refuses to declare a queue again with other arguments). The caps themselves are checked on
every engine by tests/engines/test_conformance.py."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from forkq import Forkq
from forkq.engines.contract import Broker, Consumer, DeadLetterCaps, outgoing
from forkq.engines.registry import open_backend, open_broker
from forkq.exceptions import ConfigurationError
from tests.conftest import AMQP, amqp_test_url, engine_url

C = Consumer("w", "w/1")


def _dead_letter(broker: Broker, queue: str, count: int) -> None:
    session = broker.consumer(C, open_backend("memory://dead-caps"))
    for i in range(count):
        broker.publish([outgoing(queue, b"%d" % i)])
        [d] = session.fetch([queue], 1, 5.0)
        session.dead_letter(d, f"letter {i}")


def test_an_sqlite_file_made_before_the_caps_counts_its_letters_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.sqlite3"
    _dead_letter(open_broker(url, DeadLetterCaps(0, 0)), "q", 6)
    with sqlite3.connect(tmp_path / "old.sqlite3") as conn:  # as the file was before the caps
        conn.executescript(
            """DROP TRIGGER forkq_dead_added; DROP TRIGGER forkq_dead_removed;
               DROP TABLE forkq_dead_counts; DROP INDEX forkq_dead_queue;
               DROP INDEX forkq_dead_age;"""
        )
    capped = open_broker(url, DeadLetterCaps(max_count=4, max_age=0))
    _dead_letter(capped, "q", 1)
    assert [d.reason for d in capped.dead_letters("q")] == [f"letter {i}" for i in (3, 4, 5, 0)]
    capped.close()


def test_settings_and_environment_set_the_caps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/forkq.sqlite3"
    assert Forkq(broker=url).broker.dead_caps == DeadLetterCaps(10_000, 7 * 86_400.0)
    monkeypatch.setenv("FORKQ_DEAD_LETTER_MAX", "5")
    monkeypatch.setenv("FORKQ_DEAD_LETTER_TTL", "0")
    assert Forkq(broker=url).broker.dead_caps == DeadLetterCaps(5, 0)
    assert Forkq(broker=url, dead_letter_max=0).broker.dead_caps == DeadLetterCaps(0, 0)
    with pytest.raises(ConfigurationError, match="dead_letter_max must be >= 0"):
        Forkq(broker=url, dead_letter_max=-1)


@pytest.fixture
def old_dead_queue() -> Iterator[str]:
    """A URL whose P.dead exists already, declared as forkq declared it before the caps."""
    prefix = f"forkq-test-{uuid.uuid4().hex[:10]}"
    for url in engine_url("amqp", amqp_test_url(prefix=prefix)):
        connection = pika.BlockingConnection(pika.URLParameters(AMQP))
        connection.channel().queue_declare(
            f"{prefix}.dead", durable=True, arguments={"x-expires": 300_000}
        )
        connection.close()
        yield url


def test_a_rabbitmq_dead_queue_declared_without_caps_is_used_as_it_is(
    old_dead_queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    broker = open_broker(old_dead_queue, DeadLetterCaps(max_count=2, max_age=0))
    with caplog.at_level(logging.WARNING, logger="forkq.broker"):
        _dead_letter(broker, "q", 3)
    assert len(broker.dead_letters("q")) == 3  # its own arguments: no cap
    [said] = [r.getMessage() for r in caplog.records if r.name == "forkq.broker"]
    assert "exists with other arguments than this forkq's dead-letter caps" in said
    assert "rabbitmqctl set_policy" in said and '"max-length": 2' in said
    broker.close()


def test_a_new_rabbitmq_dead_queue_gets_the_caps() -> None:
    for url in engine_url("amqp", amqp_test_url()):
        broker = open_broker(url, DeadLetterCaps(max_count=2, max_age=0))
        _dead_letter(broker, "q", 3)
        assert [d.reason for d in broker.dead_letters("q")] == ["letter 1", "letter 2"]
        broker.close()
