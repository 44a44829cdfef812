"""One poison message among 200 valid tasks, on a real 4-child worker, on every broker: the
poison ends dead-lettered with its reason within the redelivery limit, and every valid task
completes. Poisons: a task nested too deeply to decode, a task that kills its child, and an
entry written straight into the engine's own structures (tests/engines/test_hostile_*.py write every
kind of those)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from forkq import Forkq, TaskFailed
from forkq.engines.contract import DeadLetter, outgoing
from forkq.engines.redis.client import client_from_url
from forkq.engines.redis.keys import QueueKeys
from forkq.engines.sqlite.file import path_from_url
from forkq.envelope import make_message
from forkq.result import AsyncResult
from tests import amqp_raw as raw
from tests.conftest import WorkerProcess, results_url_for, wait_until_serving

SECRET = "poison-test-secret"
VALID = 200


@pytest.fixture
def broker_url(every_broker_url: str) -> str:
    return every_broker_url


@pytest.fixture
def signed_client(e2e_dir: Path, broker_url: str) -> Iterator[Forkq]:
    app = Forkq(
        "e2e", broker=broker_url, backend=results_url_for(broker_url, e2e_dir), secret=SECRET
    )
    yield app
    app.close()


def send_deeply_nested(app: Forkq) -> AsyncResult:
    """Arguments nested deeper than any Python's JSON decoding can go (100,000 levels, 200 KB),
    signed with the client's secret. They go in as `msgspec.Raw`, written out as they are: no
    client can build them by recursion either, and how deep one can depends on the Python (3.12
    and later count C recursion apart from Python's, 3.13 allows 10,000 levels)."""
    depth = 100_000
    nested = msgspec.Raw(b"[" * depth + b"]" * depth)
    message = make_message("e2eapp.add", [nested, 0], {}, queue=app.settings.default_queue)
    app.broker.publish([outgoing(message.queue, app.codec.encode(message))])
    return app.AsyncResult(message.id)


def send_child_killer(app: Forkq) -> AsyncResult:
    return app.send_task("e2eapp.die")


def settled(app: Forkq, queue: str) -> tuple[list[DeadLetter], int]:
    """Dead letters and the queue's size once the last ack and dead-letter move are done: a
    result is stored before its message is acked or moved, and no broker announces those."""
    deadline = time.monotonic() + 10
    while True:
        dead, size = app.broker.dead_letters(queue), app.broker.size(queue)
        if (dead and size == 0) or time.monotonic() > deadline:
            return dead, size
        time.sleep(0.05)


POISONS: dict[str, tuple[Callable[[Forkq], AsyncResult], str, str]] = {
    "nested": (send_deeply_nested, "MessageRejected", "nested too deeply to decode"),
    "kills-its-child": (send_child_killer, "WorkerLost", "worker lost: the process handling"),
}


def around_valid_tasks(app: Forkq, send_poison: Callable[[], object]) -> list[AsyncResult]:
    queue = app.settings.default_queue
    valid = [make_message("e2eapp.add", [i, 1], {}, queue=queue) for i in range(VALID)]
    results = app.publish_many(valid[: VALID // 2])
    send_poison()
    return results + app.publish_many(valid[VALID // 2 :])


@pytest.mark.timeout(180)
@pytest.mark.parametrize("poison", sorted(POISONS))
def test_a_poison_among_valid_tasks_is_dead_lettered_and_the_rest_run(
    poison: str, signed_client: Forkq, start_worker: Callable[..., WorkerProcess]
) -> None:
    send_poison, exc_type, reason = POISONS[poison]
    worker = start_worker("-c", "4", env={"FORKQ_SECRET": SECRET})
    wait_until_serving(signed_client, worker)
    sent: list[AsyncResult] = []
    results = around_valid_tasks(signed_client, lambda: sent.append(send_poison(signed_client)))

    assert [r.get(timeout=90) for r in results] == [i + 1 for i in range(VALID)]
    with pytest.raises(TaskFailed) as failed:
        sent[0].get(timeout=90)
    assert failed.value.exc_type == exc_type
    [dead], size = settled(signed_client, signed_client.settings.default_queue)
    assert reason in dead.reason, dead.reason
    assert size == 0
    assert worker.proc.poll() is None


def plant_in_sqlite(app: Forkq, queue: str) -> str:
    with sqlite3.connect(path_from_url(app.settings.broker_url)) as conn:  # TEXT, not a BLOB
        conn.execute(
            "INSERT INTO forkq_messages (queue, priority, visible_at, body) VALUES (?, 0, 0, ?)",
            (queue, "not a blob"),
        )
    return "malformed row: body is TEXT"


def plant_in_redis(app: Forkq, queue: str) -> str:
    prefix = app.settings.broker_url.split("prefix=")[1].split("&")[0]
    client = client_from_url(app.settings.broker_url)[0]  # a cluster's too
    client.zadd(QueueKeys(prefix, queue).delayed, {"no-pipes-at-all": 1})
    client.close()
    return "malformed delayed entry"


def plant_in_rabbitmq(app: Forkq, queue: str) -> str:
    prefix = app.settings.broker_url.split("prefix=")[1].split("&")[0]
    publisher = raw.RawPublisher(app.settings.broker_url)
    try:  # a header pika cannot read: a timestamp past the year 9999
        headers = raw.table([(b"sent", raw.timestamp(2**63))])
        publisher.publish(f"{prefix}.{queue}", b"{}", raw.RawProperties(headers, None))
    finally:
        publisher.close()
    return "unreadable AMQP properties"


PLANTERS = {
    "sqlite": plant_in_sqlite,
    "redis": plant_in_redis,
    "redis+cluster": plant_in_redis,
    "amqp": plant_in_rabbitmq,
}


@pytest.mark.timeout(180)
def test_a_malformed_entry_among_valid_tasks_is_dead_lettered_and_the_rest_run(
    signed_client: Forkq, start_worker: Callable[..., WorkerProcess]
) -> None:
    queue = signed_client.settings.default_queue
    signed_client.broker.size(queue)  # declares the queue where the engine has declarations
    plant = PLANTERS[signed_client.settings.broker_url.split(":")[0]]
    worker = start_worker("-c", "4", env={"FORKQ_SECRET": SECRET})
    wait_until_serving(signed_client, worker)
    reasons: list[str] = []
    results = around_valid_tasks(signed_client, lambda: reasons.append(plant(signed_client, queue)))

    assert [r.get(timeout=90) for r in results] == [i + 1 for i in range(VALID)]
    [dead], size = settled(signed_client, queue)
    assert reasons[0] in dead.reason, dead.reason
    assert size == 0
    assert "unreachable" not in worker.log() and "Traceback" not in worker.log()
    assert worker.proc.poll() is None
