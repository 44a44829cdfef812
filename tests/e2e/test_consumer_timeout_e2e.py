"""A task that runs longer than RabbitMQ's `consumer_timeout` (30 min by default): RabbitMQ
closes the channel that holds its unacked delivery with PRECONDITION_FAILED and puts the
message back. The worker says so in one line naming the setting, keeps the task's outcome
(stored before the ack that fails), and the message, delivered again, is acked without running
the task again: its stored result says it ran to its end. On a private node
(tests/rabbit_servers.py) with a 2 s timeout, checked every half second (RabbitMQ checks once
a minute: `channel_tick_interval`, set on the private node only)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from forkq import Forkq
from tests.conftest import WorkerProcess, results_url_for, wait_until_serving
from tests.rabbit_servers import PrivateRabbit, running_rabbit

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

TIMEOUT_MS = 2000


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbit]:
    directory = tmp_path_factory.mktemp("rabbitmq-consumer-timeout")
    with running_rabbit(directory, config=f"consumer_timeout = {TIMEOUT_MS}\n") as node:
        node.ctl("eval", "application:set_env(rabbit, channel_tick_interval, 500).")
        yield node


def test_a_task_longer_than_the_consumer_timeout_keeps_its_outcome_and_runs_once(
    rabbit: PrivateRabbit, e2e_dir: Path
) -> None:
    url = rabbit.url(prefix=f"ct-{uuid.uuid4().hex[:8]}")
    counter_url = "redis://127.0.0.1:6379/15"  # the tasks count their runs there
    key = f"ct-runs-{uuid.uuid4().hex}"
    client = Forkq("e2e", broker=url, backend=results_url_for(url, e2e_dir))
    worker = WorkerProcess(e2e_dir, url, "-c", "1", "-l", "info")
    try:
        wait_until_serving(client, worker)
        long = client.send_task("e2eapp.counted", (counter_url, 4.0, key))
        assert long.get(timeout=60) == long.id
        assert client.send_task("e2eapp.add", (2, 3)).get(timeout=30) == 5  # no crash loop
        runs = redis.Redis.from_url(counter_url).hgetall(key)
        assert runs == {long.id.encode(): b"1"}, worker.log()
        log = worker.log()
        assert "consumer_timeout" in log, log
    finally:
        client.close()
        worker.stop()
        redis.Redis.from_url(counter_url).delete(key)
