"""End to end: a real `forkq worker` process tree on the SQLite broker."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from forkq import Forkq, TaskFailed
from forkq.engines.contract import Consumer, Recovery, outgoing
from forkq.envelope import make_message
from forkq.result import AsyncResult
from tests.conftest import (
    StartedSignal,
    wait_until_serving,
    with_param,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def broker_url(every_broker_url: str) -> str:
    """Every test here runs on the embedded SQLite broker and on the real Redis."""
    return every_broker_url


def publish(client: Forkq, task: str, calls: list[tuple[Any, ...]]) -> list[AsyncResult]:
    queue = client.settings.default_queue
    return client.publish_many([make_message(task, list(a), {}, queue=queue) for a in calls])


def test_a_thousand_tasks_through_four_children(client: Forkq, start_worker: Any) -> None:
    worker = start_worker("-c", "4", "-l", "warning")
    wait_until_serving(client, worker)
    results = publish(client, "e2eapp.add", [(i, i) for i in range(1000)])
    assert [r.get(timeout=60) for r in results] == [2 * i for i in range(1000)]
    assert len(worker.children()) == 4
    assert os.getpid() not in {r.get() for r in publish(client, "e2eapp.ping", [()] * 8)}


def test_children_collect_garbage_and_share_a_frozen_heap(client: Forkq, start_worker: Any) -> None:
    # The collector is paused while the worker starts (collector_paused): the children must
    # have it on again, with what the master loaded frozen (shared copy-on-write).
    worker = start_worker("-c", "2", "-l", "warning")
    wait_until_serving(client, worker)
    state = client.send_task("e2eapp.collector").get(timeout=30)
    assert state["enabled"] is True
    assert state["frozen"] > 10_000


def test_kill_9_of_a_busy_child_loses_nothing(client: Forkq, start_worker: Any) -> None:
    worker = start_worker("-c", "4", "-l", "warning")
    wait_until_serving(client, worker)
    results = publish(client, "e2eapp.slow_add", [(i, 1, 0.005) for i in range(600)])
    results[20].get(timeout=60)  # work is flowing
    victim = worker.children()[0]
    os.kill(victim, signal.SIGKILL)
    assert [r.get(timeout=90) for r in results] == [i + 1 for i in range(600)]
    survivors = worker.children()
    assert victim not in survivors and len(survivors) == 4
    assert "killed by SIGKILL" in worker.log()


@pytest.mark.slow
def test_sigterm_mid_run_drains_with_nothing_lost(client: Forkq, start_worker: Any) -> None:
    worker = start_worker("-c", "2", "-l", "warning")
    wait_until_serving(client, worker)
    total = 300
    results = publish(client, "e2eapp.slow_add", [(i, 0, 0.01) for i in range(total)])
    results[10].get(timeout=60)
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    done = sum(1 for r in results if r.ready())
    waiting = client.broker.size(client.settings.default_queue)
    assert done + waiting == total and waiting > 0
    # Nothing is left held by the stopped worker: a new consumer can take all of it now.
    taker = client.broker.consumer(Consumer("t", "t/0"), client.backend)
    held = taker.fetch([client.settings.default_queue], total, 0)
    assert len(held) == waiting
    counts = {d.delivery_count for d in held}
    if client.broker.capabilities.recovery is Recovery.LEASE:
        assert counts == {1}  # a graceful stop counts no start
    else:  # RabbitMQ: what it pushed in the instant a child left comes back "redelivered"
        assert counts <= {1, 2}
    taker.release()
    again = start_worker("-c", "2", "-l", "warning")
    assert [r.get(timeout=60) for r in results] == list(range(total))
    again.signal(signal.SIGTERM)
    assert again.wait(timeout=60) == 0


def test_malformed_messages_are_dead_lettered_while_valid_ones_complete(
    client: Forkq, start_worker: Any
) -> None:
    queue = client.settings.default_queue
    hostile = [
        b"not json at all",
        b'{"id": "bad-types", "task": 5, "queue": []}',
        b"\xff\xfe" * 10,
        b"[]",
    ]
    for body in hostile:
        client.broker.publish([outgoing(queue, body)])
    unknown = client.send_task("e2eapp.no_such_task")
    valid = publish(client, "e2eapp.add", [(i, 1) for i in range(50)])
    # One child takes messages in order: once the last valid one is done, every hostile one
    # before it has been dead-lettered.
    worker = start_worker("-c", "1", "-l", "warning")
    assert [r.get(timeout=60) for r in valid] == [i + 1 for i in range(50)]
    with pytest.raises(TaskFailed, match="unknown task"):
        unknown.get(timeout=30)
    with pytest.raises(TaskFailed, match="malformed"):
        client.AsyncResult("bad-types").get(timeout=30)
    reasons = [d.reason for d in client.broker.dead_letters(queue)]
    assert len(reasons) == 5 and any("unknown task" in r for r in reasons)
    assert "exit code" not in worker.log() and "killed by" not in worker.log()


def test_a_task_that_kills_its_child_fails_as_worker_lost(client: Forkq, start_worker: Any) -> None:
    worker = start_worker("-c", "1", "-l", "warning")
    wait_until_serving(client, worker)
    fatal = client.send_task("e2eapp.die")
    with pytest.raises(TaskFailed) as failed:
        fatal.get(timeout=60)
    assert failed.value.exc_type == "WorkerLost"
    # The pool carries on; and with one child, this task ran after the dead-lettering.
    assert client.send_task("e2eapp.add", (1, 2)).get(timeout=30) == 3
    [letter] = client.broker.dead_letters(client.settings.default_queue)
    assert letter.reason.startswith("worker lost")
    assert worker.log().count("exit code 1") == client.settings.max_deliveries


@pytest.mark.slow
def test_children_that_cannot_boot_stop_the_worker_with_exit_code_4(
    client: Forkq, start_worker: Any
) -> None:
    worker = start_worker("-c", "2", "-l", "warning", env={"E2E_FAIL_BOOT": "1"})
    assert worker.wait(timeout=60) == 4
    log = worker.log()
    assert "cannot connect to the database" in log
    assert "children cannot boot" in log


@pytest.mark.slow
def test_children_crashing_while_idle_are_respawned_with_backoff_not_given_up(
    client: Forkq, start_worker: Any
) -> None:
    worker = start_worker("-c", "1", "-l", "info", env={"E2E_CRASH_IDLE": "1"})
    for delay in ("0.2s", "0.4s", "0.8s", "1.6s", "3.2s"):
        worker.wait_for_log(f"crashed soon after starting; next spawn in {delay}")
    assert worker.proc.poll() is None  # five in a row, still supervising: not a boot failure
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


def test_worker_with_unimportable_app_exits_3(e2e_dir: Any, sqlite_url: str) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "forkq",
            "worker",
            "-A",
            "no_such_module_xyz",
            "--broker",
            sqlite_url,
        ],
        cwd=e2e_dir,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 3
    assert proc.stderr.strip().count("\n") == 0  # one line
    assert "no_such_module_xyz" in proc.stderr


def _held_count(client: Forkq) -> int:
    """Messages in the queue that no consumer can take right now (held by someone)."""
    queue = client.settings.default_queue
    probe = client.broker.consumer(Consumer("probe", "probe/0"), client.backend)
    free = probe.fetch([queue], 10_000, 0)
    probe.release()
    return client.broker.size(queue) - len(free)


def test_a_task_past_the_shutdown_timeout_is_killed_and_released(
    client: Forkq, start_worker: Any, e2e_dir: Any
) -> None:
    worker = start_worker("-c", "1", "-l", "info", "--shutdown-timeout", "1")
    wait_until_serving(client, worker)
    started = StartedSignal(e2e_dir)
    stuck = client.send_task("e2eapp.announce_then_sleep", (started.path, 60))
    started.wait()
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert "shutdown timeout" in worker.log()
    assert not stuck.ready()
    assert client.broker.size(client.settings.default_queue) == 1
    assert _held_count(client) == 0  # released at once, not left to lease expiry


@pytest.mark.parametrize("signals", [(signal.SIGQUIT,), (signal.SIGINT, signal.SIGINT)])
def test_cold_shutdown_kills_now_and_releases(
    client: Forkq, start_worker: Any, e2e_dir: Any, signals: tuple[int, ...]
) -> None:
    worker = start_worker("-c", "2", "--prefetch", "1", "-l", "info")
    wait_until_serving(client, worker)
    announcements = [StartedSignal(e2e_dir, f"child{i}") for i in range(2)]
    busy = [client.send_task("e2eapp.announce_then_sleep", (a.path, 60)) for a in announcements]
    for announcement in announcements:
        announcement.wait()  # both children are running a 60 s task
    for signum in signals:
        worker.signal(signum)
        # Standard signals do not queue: await each one's effect before sending the next.
        worker.wait_for_log("warm shutdown" if signum == signal.SIGINT else "cold shutdown")
    assert worker.wait(timeout=10) == 0  # not 60 s: the children were killed
    assert "cold shutdown" in worker.log()
    assert not any(r.ready() for r in busy)
    assert client.broker.size(client.settings.default_queue) == 2
    assert _held_count(client) == 0  # released at once for redelivery


@pytest.mark.slow
def test_a_dead_workers_messages_are_taken_over_after_its_lease_expires(
    e2e_dir: Any, broker_url: str, client: Forkq
) -> None:
    from tests.conftest import WorkerProcess

    url = with_param(broker_url, "lease_ttl", "2")
    first = WorkerProcess(e2e_dir, url, "-c", "2", "-l", "warning")
    second: WorkerProcess | None = None
    try:
        client.configure(broker_url=url)
        wait_until_serving(client, first)
        results = publish(client, "e2eapp.slow_add", [(i, 0, 0.05) for i in range(60)])
        results[2].get(timeout=30)
        os.kill(first.pid, signal.SIGKILL)  # the master only: children die with it
        first.wait(timeout=10)
        second = WorkerProcess(e2e_dir, url, "-c", "2", "-l", "warning")
        assert [r.get(timeout=60) for r in results] == list(range(60))
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_worker_consumes_only_its_queues(client: Forkq, start_worker: Any) -> None:
    high = client.send_task("e2eapp.add", (1, 1), queue="high")
    low = client.send_task("e2eapp.add", (2, 2), queue="low")
    other = client.send_task("e2eapp.add", (3, 3), queue="other")
    worker = start_worker("-c", "1", "-Q", "high,low", "-l", "warning")
    assert (high.get(timeout=30), low.get(timeout=30)) == (2, 4)
    assert not other.ready() and client.broker.size("other") == 1
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
