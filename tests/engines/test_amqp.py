"""RabbitMQ-specific behaviour: recovery by connection, heartbeats during long tasks, a
RabbitMQ restart mid-run, hostile messages, kill -9 under a run of thousands of tasks.

The conformance suite and the worker end-to-end tests also run on RabbitMQ; these cover what
is particular to it. Queues live under a unique prefix and expire once unused (x-expires).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pika
import pytest
import redis
from pika.adapters.blocking_connection import BlockingChannel

from forkq import Forkq
from forkq.engines.contract import Broker, Consumer, ConsumerSession, Delivery, outgoing
from forkq.engines.registry import open_backend, open_broker
from forkq.envelope import make_message
from forkq.result import ResultRecord, success_record
from forkq.worker.task_process import run_in_own_process
from tests.conftest import (
    REDIS,
    WorkerProcess,
    amqp_test_url,
    engine_url,
    redis_reachable,
    results_url_for,
    survive_outage,
    wait_until_serving,
)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def url() -> Iterator[str]:
    yield from engine_url("amqp", amqp_test_url())


@pytest.fixture
def runs_key() -> Iterator[str]:
    """A Redis hash of its own (tests' database 15) where `e2eapp.counted` counts its runs."""
    if not redis_reachable():
        if os.environ.get("CI") == "true":
            pytest.fail("Redis is not reachable on 127.0.0.1:6379 (CI=true: no skipping)")
        pytest.skip("no Redis on 127.0.0.1:6379")
    key = f"forkq-test-runs-{uuid.uuid4().hex[:10]}"
    yield key
    redis.Redis.from_url(REDIS).delete(key)


def client_for(url: str, e2e_dir: Path) -> Forkq:
    return Forkq("e2e", broker=url, backend=results_url_for(url, e2e_dir))


def runs(key: str) -> dict[bytes, bytes]:
    return redis.Redis.from_url(REDIS).hgetall(key)  # type: ignore[return-value]


def session(broker: Broker, name: str, worker: str = "w") -> ConsumerSession:
    """The broker's session for consumer `worker/name` (results in memory: none is stored)."""
    return broker.consumer(Consumer(worker, f"{worker}/{name}"), open_backend("memory://amqp"))


def ack(held: ConsumerSession, delivery: Delivery) -> None:
    """Finished without a result, and the kept ack sent at once."""
    held.finish(delivery, None)
    held.flush()


def test_asking_the_depth_of_a_queue_creates_none(url: str) -> None:
    broker = open_broker(url)
    try:
        name = f"asked-{uuid.uuid4().hex[:8]}"
        assert broker.depth(name).messages == 0
        assert broker.depth(name).messages == 0  # the connection still works after a 404
        with pika.BlockingConnection(pika.URLParameters(url.split("?")[0])) as conn:
            channel = conn.channel()
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as missing:
                channel.queue_declare(broker.topology.queue(name), passive=True)  # type: ignore[attr-defined]
        assert missing.value.reply_code == 404
        broker.publish([outgoing(name, b"m")])
        assert broker.depth(name).messages == 1
        broker.purge(name)
    finally:
        broker.close()


def test_a_dead_consumers_messages_come_back_counted(url: str) -> None:
    broker = open_broker(url)
    broker.publish([outgoing("q", b"running"), outgoing("q", b"prefetched")])
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the holder, which dies holding both
        got = session(open_broker(url), "0", worker="dead").fetch(["q"], 2, 10.0)
        os._exit(0 if len(got) == 2 else 1)
    assert os.waitpid(pid, 0)[1] == 0  # exited without ack: RabbitMQ saw the socket close
    again, deadline = [], time.monotonic() + 10
    while len(again) < 2 and time.monotonic() < deadline:  # each fetch waits for a push
        again += session(broker, "0").fetch(["q"], 2 - len(again), 10.0)
    # RabbitMQ cannot tell which one ran: both come back returned, the lost delivery counted
    # as a start (the executor adds the starts of earlier returned deliveries).
    assert {d.body: (d.delivery_count, d.returned) for d in again} == {
        b"running": (2, True),
        b"prefetched": (2, True),
    }
    broker.close()


def hold_and_die(url: str, queue: str) -> None:
    """A process fetches one message and dies holding it, without starting it."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the holder
        got = session(open_broker(url), "0", worker="dead").fetch([queue], 1, 10.0)
        os._exit(0 if len(got) == 1 else 1)
    assert os.waitpid(pid, 0)[1] == 0


def test_a_message_returned_five_times_without_starting_still_runs(url: str, e2e_dir: Path) -> None:
    client = client_for(url, e2e_dir)
    result = client.send_task("e2eapp.deliveries")
    for _ in range(5):  # five holders die with it in their buffers (a neighbour's poison)
        hold_and_die(url, client.settings.default_queue)
    worker = WorkerProcess(e2e_dir, url, "-c", "1")
    try:
        assert result.get(timeout=60) == 2  # the last lost delivery is taken as a start
    finally:
        worker.stop()
        client.close()


@pytest.mark.slow
def test_a_task_longer_than_three_heartbeats_runs_once(
    url: str, e2e_dir: Path, runs_key: str
) -> None:
    url += "&heartbeat=1"  # RabbitMQ drops a connection silent for about two intervals
    client = client_for(url, e2e_dir)
    worker = WorkerProcess(e2e_dir, url, "-c", "1", "-l", "info")
    try:
        wait_until_serving(client, worker)
        task_id = client.send_task("e2eapp.counted", (REDIS, 4.5, runs_key)).get(timeout=60)
        # A dropped connection would have put it back, and the next fetch would run it again.
        assert client.send_task("e2eapp.add", (1, 1)).get(timeout=30) == 2
        assert runs(runs_key) == {task_id.encode(): b"1"}
        assert "lost its connection" not in worker.log()
    finally:
        worker.stop()
        client.close()


def test_hostile_messages_published_straight_to_the_queue(url: str, e2e_dir: Path) -> None:
    client = client_for(url, e2e_dir)
    queue = client.settings.default_queue
    client.broker.purge(queue)  # declares the queue with forkq's arguments (it is empty)
    prefix = url.split("prefix=")[1].split("&")[0]
    connection = pika.BlockingConnection(pika.URLParameters(url.split("?")[0]))
    channel = connection.channel()
    hostile = [
        (b"not json", {}),
        (b"\xff\xfe\x00", {"x-forkq-starts": "many"}),
        (b'{"v": 1}', {"x-forkq-due": "soon"}),
        (b"{}", {"x-forkq-starts": -5, "x-forkq-due": -1}),
    ]
    for body, headers in hostile:
        properties = pika.BasicProperties(headers=headers, priority=200)
        channel.basic_publish("", f"{prefix}.{queue}", body, properties)
    connection.close()
    worker = WorkerProcess(e2e_dir, url, "-c", "2", "-l", "warning")
    try:
        valid = [client.send_task("e2eapp.add", (i, i)) for i in range(20)]
        assert [r.get(timeout=60) for r in valid] == [2 * i for i in range(20)]
        deadline = time.monotonic() + 30
        while len(client.broker.dead_letters()) < len(hostile) and time.monotonic() < deadline:
            client.send_task("e2eapp.add", (0, 0)).get(timeout=30)  # an event to wait on
        letters = client.broker.dead_letters()
        assert sorted(d.body for d in letters) == sorted(body for body, _ in hostile)
        assert all(d.reason for d in letters)
        assert worker.proc.poll() is None and "Traceback" not in worker.log()
    finally:
        worker.stop()
        client.close()


@pytest.mark.slow
def test_kill_9_of_busy_children_under_thousands_of_tasks(
    url: str, e2e_dir: Path, runs_key: str
) -> None:
    client = client_for(url, e2e_dir)
    worker = WorkerProcess(e2e_dir, url, "-c", "2", "-l", "warning")
    try:
        wait_until_serving(client, worker)
        queue, total = client.settings.default_queue, 2000
        args = [REDIS, 0.001, runs_key]
        calls = [make_message("e2eapp.counted", args, {}, queue=queue) for _ in range(total)]
        results = client.publish_many(calls)
        for step in (300, 700, 1100):
            results[step].get(timeout=90)
            os.kill(worker.children()[0], signal.SIGKILL)
        assert {r.get(timeout=120) for r in results} == {r.id for r in results}
        counts = runs(runs_key)
        assert len(counts) == total
        duplicates = sum(int(n) - 1 for n in counts.values())
        print(f"\n{total} tasks on RabbitMQ, 3 busy children killed: {duplicates} ran twice")
        assert duplicates <= 3  # only the task running in each killed child runs again
    finally:
        worker.stop()
        client.close()


def test_kill_9_of_children_running_tasks_without_results(
    url: str, e2e_dir: Path, runs_key: str
) -> None:
    """Their acks are kept back to go as one per batch: a killed child's finished tasks of
    the batch it was in come back and run again, at most --prefetch per kill."""
    client = client_for(url, e2e_dir)
    worker = WorkerProcess(e2e_dir, url, "-c", "2", "--prefetch", "4", "-l", "warning")
    counter = redis.Redis.from_url(REDIS)
    try:
        wait_until_serving(client, worker)
        queue, total = client.settings.default_queue, 1000
        message = make_message("e2eapp.counted_quietly", [REDIS, 0.0, runs_key], {}, queue=queue)
        client.publish_many([msgspec.structs.replace(message, id=f"t{n}") for n in range(total)])
        seen: set[str] = set()
        kills = {150, 300, 450}
        while len(seen) < total:
            popped = counter.blpop([f"{runs_key}:done"], timeout=60)
            assert popped is not None, f"{len(seen)} of {total} tasks done within 60 s"
            seen.add(popped[1].decode())
            if len(seen) in kills:
                kills.discard(len(seen))
                os.kill(worker.children()[0], signal.SIGKILL)
        counts = runs(runs_key)
        duplicates = sum(int(n) - 1 for n in counts.values())
        print(f"\n{total} tasks without results, 3 busy children killed: {duplicates} ran twice")
        assert len(counts) == total and duplicates <= 3 * 4
    finally:
        worker.stop()
        client.close()
        counter.delete(f"{runs_key}:done")


@pytest.fixture
def rabbitmqctl() -> str:
    path = shutil.which("rabbitmqctl")
    if path is None or os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("restarting RabbitMQ needs rabbitmqctl, run as root (CI=true)")
        pytest.skip("restarting RabbitMQ needs rabbitmqctl, run as root")
    return path


@pytest.mark.slow
def test_worker_survives_a_rabbitmq_restart(url: str, e2e_dir: Path, rabbitmqctl: str) -> None:
    client = client_for(url, e2e_dir)
    worker = WorkerProcess(e2e_dir, url, "-c", "2", "-l", "info")

    def app(action: str) -> None:
        subprocess.run([rabbitmqctl, action], check=True, capture_output=True, timeout=120)

    try:
        survive_outage(client, worker, lambda: app("stop_app"), lambda: app("start_app"))
    finally:
        worker.stop()
        client.close()


def test_a_task_process_may_fork_from_a_thread_of_its_own(url: str) -> None:
    """The keeper's lock is held across the child's fork of a task process: the copy must
    let go of it, or a fork from any thread but the copy's main one waits on it forever."""
    broker = open_broker(url)
    try:
        session(broker, "0/1").fetch(["q"], 1, 0.1)  # starts the keeper, as a child's
        forked: list[str] = []

        def call() -> ResultRecord:
            def fork_and_wait() -> None:
                pid = os.fork()
                if pid == 0:
                    os._exit(0)
                os.waitpid(pid, 0)
                forked.append("forked")

            helper = threading.Thread(target=fork_and_wait)
            helper.start()
            helper.join(10)
            return success_record(list(forked))

        record = run_in_own_process(lambda: None, call)
        assert msgspec.json.decode(record.result) == ["forked"]
    finally:
        broker.close()


def test_the_channel_limit_follows_a_smaller_fetch_even_while_rabbitmq_refills(url: str) -> None:
    """--prefetch auto going from 16 to 1 (tasks turned long): acks let RabbitMQ push more into
    the child's buffer, which never empties; the limit must still drop, or the child keeps
    taking 15 messages more behind each long task that other children could run."""
    broker, outsider = open_broker(url), open_broker(url)
    broker.publish([outgoing("q", b"%d" % n) for n in range(40)])
    child = session(broker, "0/1")
    for delivery in child.fetch(["q"], 16, 5.0):
        ack(child, delivery)
        broker._open().process_data_events(time_limit=0.05)  # pushes arrive during a task
    for _ in range(5):
        taken = child.fetch(["q"], 1, 5.0)
        broker._open().process_data_events(time_limit=0.2)  # as the keeper does, mid-task
        for delivery in taken:
            ack(child, delivery)
    free = session(outsider, "0/1", worker="o").fetch(["q"], 40, 0)
    # 21 ran. What RabbitMQ had pushed before the limit fell (up to 16) drains one a fetch, but
    # nothing more is pushed: at most 16 - 5 = 11 left in the child (without the new limit,
    # RabbitMQ kept its buffer at 16 and 3 were free).
    assert len(free) >= 40 - 21 - 11
    for engine in (broker, outsider):
        engine.close()


def test_kept_acks_go_as_one_ack_for_a_batch_finished_in_order(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One basic.ack (multiple) covers every tag up to it: only for kept acks below every
    message still held. One finished before an earlier one is acked on its own."""
    sent: list[tuple[int, bool]] = []
    basic_ack = BlockingChannel.basic_ack

    def recorded(channel: BlockingChannel, delivery_tag: int = 0, multiple: bool = False) -> None:
        sent.append((delivery_tag, multiple))
        basic_ack(channel, delivery_tag, multiple)

    monkeypatch.setattr(BlockingChannel, "basic_ack", recorded)
    broker = open_broker(url)
    try:
        broker.publish([outgoing("q", b"%d" % n) for n in range(5)])
        child = session(broker, "0/1")
        first, second, third, fourth, fifth = child.fetch(["q"], 5, 0)  # tags 1 to 5
        for done in (third, fourth):  # out of order: the first two are still held
            child.finish(done, None)
        child.flush()
        for done in (first, second):
            child.finish(done, None)
        assert child.fetch(["q"], 1, 0) == []  # the kept acks go first
        assert sent == [(3, False), (4, False), (2, True)]
        child.finish(fifth, None)
        assert broker.size("q") == 0
        assert sent[-1] == (5, True)
    finally:
        broker.close()


def test_the_keeper_sends_kept_acks_while_a_task_runs(url: str) -> None:
    broker = open_broker(url)
    try:
        broker.publish([outgoing("q", b"quick"), outgoing("q", b"long")])
        child = session(broker, "0/1")
        quick, _ = child.fetch(["q"], 2, 5.0)  # with a timeout: the keeper starts
        child.finish(quick, None)
        assert child.kept_acks() == [("q", quick.receipt)]
        deadline = time.monotonic() + 5  # the long task runs: no call on the broker
        while child.kept_acks():
            assert time.monotonic() < deadline, "the keeper never sent the kept ack"
            time.sleep(0.05)
        assert child.release() == 1  # the long one only
    finally:
        broker.close()


def test_a_release_sends_the_kept_acks_first_even_out_of_order(url: str) -> None:
    """The message finished second is acked on its own (the first is still held), before the
    release publishes the rest back: it never runs again."""
    broker = open_broker(url)
    try:
        broker.publish([outgoing("q", b"running"), outgoing("q", b"finished"), outgoing("q", b"3")])
        leaving = session(broker, "0/1")
        running, finished, _ = leaving.fetch(["q"], 3, 0)
        leaving.finish(finished, None)
        assert leaving.release([running.receipt]) == 2
        again = {d.body: d.delivery_count for d in session(broker, "0/2").fetch(["q"], 3, 0)}
        assert again == {b"running": 2, b"3": 1}
        assert broker.size("q") == 2
    finally:
        broker.close()
