"""Time limits and recycling, on a real worker."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from forkq import Forkq, TaskFailed
from forkq.envelope import make_message
from tests.conftest import wait_until_serving

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def broker_url(every_broker_url: str) -> str:
    """Every test here runs on the embedded SQLite broker and on the real Redis."""
    return every_broker_url


FORK_PER_TASK = ("--max-tasks-per-child", "1")
# Each limit holds the same whether the task runs in the child or in a process of its own.
in_child_or_own_process = pytest.mark.parametrize(
    "mode", [(), FORK_PER_TASK], ids=["in-child", "fork-per-task"]
)


@in_child_or_own_process
def test_soft_time_limit_raises_inside_the_task(
    client: Forkq, start_worker: Any, mode: tuple[str, ...]
) -> None:
    worker = start_worker("-c", "1", "--soft-time-limit", "0.3", "-l", "warning", *mode)
    wait_until_serving(client, worker)
    assert client.send_task("e2eapp.sleep_soft", (30,)).get(timeout=20) == "cleaned up"
    with pytest.raises(TaskFailed) as failed:
        client.send_task("e2eapp.slow_add", (1, 2, 30)).get(timeout=20)
    assert failed.value.exc_type == "SoftTimeLimitExceeded"
    assert client.send_task("e2eapp.add", (1, 2)).get(timeout=20) == 3


@in_child_or_own_process
@pytest.mark.parametrize(
    ("worker_args", "task", "args"),
    [
        (("--time-limit", "0.5"), "e2eapp.slow_add", (1, 2, 60)),
        ((), "e2eapp.capped_sleep", (60,)),  # the task's own time_limit=0.5
    ],
)
def test_hard_time_limit_kills_the_child_and_fails_the_task(
    client: Forkq,
    start_worker: Any,
    worker_args: tuple[str, ...],
    task: str,
    args: tuple[Any],
    mode: tuple[str, ...],
) -> None:
    worker = start_worker("-c", "1", *worker_args, "-l", "warning", *mode)
    wait_until_serving(client, worker)
    before = worker.children()
    with pytest.raises(TaskFailed) as failed:
        client.send_task(task, args).get(timeout=30)
    assert failed.value.exc_type == "TimeLimitExceeded"
    # The next task runs in a fresh child, unaffected.
    assert client.send_task("e2eapp.add", (1, 2)).get(timeout=30) == 3
    assert worker.children() != before
    # RabbitMQ brings the killed task's message back (it may go round the queue once more)
    # and the child that gets it dead-letters it: each task done behind it is a step nearer.
    deadline = time.monotonic() + 30
    while not client.broker.dead_letters() and time.monotonic() < deadline:
        client.send_task("e2eapp.add", (0, 0)).get(timeout=30)
    [letter] = client.broker.dead_letters()
    assert letter.reason.startswith("hard time limit exceeded")
    assert "past its hard time limit: killing it" in worker.log()


def test_max_tasks_per_child_recycles_on_count(client: Forkq, start_worker: Any) -> None:
    worker = start_worker("-c", "1", "--max-tasks-per-child", "5", "-l", "warning")
    pids = [client.send_task("e2eapp.ping").get(timeout=30) for _ in range(30)]
    # 5 // 10 leaves no room for jitter: exactly 5 tasks per child, in order.
    assert [pids[i : i + 5] == [pids[i]] * 5 for i in range(0, 30, 5)] == [True] * 6
    assert len(set(pids)) == 6
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


def test_fork_per_task_runs_each_task_and_the_hooks_in_a_process_of_its_own(
    client: Forkq, start_worker: Any
) -> None:
    worker = start_worker("-c", "2", *FORK_PER_TASK, "-l", "warning")
    wait_until_serving(client, worker)
    children = worker.children()
    seen = [r.get(timeout=60) for r in [client.send_task("e2eapp.where") for _ in range(20)]]
    assert len({where["pid"] for where in seen}) == 20
    # Forked by the children, which stay: no task ran in a child, no child was replaced.
    assert {where["parent"] for where in seen} <= set(children)
    assert not {where["pid"] for where in seen} & set(children)
    assert worker.children() == children
    # The after-fork hooks ran in each task's process, once, and not in the child.
    assert all(where["hooked"] == [where["pid"]] for where in seen)


def test_fork_per_task_a_task_that_publishes_uses_a_connection_of_its_own(
    client: Forkq, start_worker: Any
) -> None:
    worker = start_worker("-c", "1", *FORK_PER_TASK, "-l", "warning")
    wait_until_serving(client, worker)
    # Had a task process written on the child's connection, the child's next fetch or ack on
    # it would fail or read the task's replies.
    for n in range(5):
        task_id = client.send_task("e2eapp.add_later", (n, 1)).get(timeout=30)
        assert client.AsyncResult(task_id).get(timeout=30) == n + 1
    assert "lost its connection" not in worker.log()


def test_in_a_child_the_hooks_run_once_per_child(client: Forkq, start_worker: Any) -> None:
    worker = start_worker("-c", "1", "-l", "warning")
    wait_until_serving(client, worker)
    [child] = worker.children()
    seen = [client.send_task("e2eapp.where").get(timeout=30) for _ in range(3)]
    assert seen == [{"pid": child, "parent": worker.pid, "hooked": [child]}] * 3


def test_fork_per_task_a_task_process_that_dies_is_lost_like_a_child(
    client: Forkq, start_worker: Any
) -> None:
    worker = start_worker("-c", "1", *FORK_PER_TASK, "-l", "warning")
    wait_until_serving(client, worker)
    with pytest.raises(TaskFailed) as failed:
        client.send_task("e2eapp.die").get(timeout=60)
    assert failed.value.exc_type == "WorkerLost"
    assert client.send_task("e2eapp.add", (1, 2)).get(timeout=30) == 3
    [letter] = client.broker.dead_letters(client.settings.default_queue)
    assert letter.reason.startswith("worker lost")
    died = "the task's process died (exit code 1)"
    assert worker.log().count(died) == client.settings.max_deliveries


def test_fork_per_task_a_dying_task_charges_only_itself(client: Forkq, start_worker: Any) -> None:
    # One batch: the task that kills its process, then three more. Each time it dies, the
    # child leaves and gives back the three it had prefetched, uncounted.
    queue = client.settings.default_queue
    calls = [make_message("e2eapp.die", [], {}, queue=queue)]
    calls += [make_message("e2eapp.deliveries", [], {}, queue=queue) for _ in range(3)]
    results = client.publish_many(calls)
    start_worker("-c", "1", *FORK_PER_TASK, "--prefetch", "4", "-l", "warning")
    with pytest.raises(TaskFailed):
        results[0].get(timeout=60)
    assert [r.get(timeout=60) for r in results[1:]] == [1, 1, 1]


@pytest.mark.slow
def test_fork_per_task_a_failing_hook_stops_the_worker_and_charges_no_task(
    client: Forkq, start_worker: Any
) -> None:
    # The hooks run in each task's process: failing there is the child failing to boot, as
    # it is without fork per task, not the task dying; its message goes back uncounted.
    worker = start_worker("-c", "1", *FORK_PER_TASK, "-l", "warning", env={"E2E_FAIL_BOOT": "1"})
    client.send_task("e2eapp.add", (1, 2))
    assert worker.wait(timeout=90) == 4
    log = worker.log()
    assert "cannot connect to the database" in log and "children cannot boot" in log
    assert client.broker.dead_letters() == []
    assert client.broker.size(client.settings.default_queue) == 1


def test_fork_per_task_a_result_json_cannot_hold_fails_the_task(
    client: Forkq, start_worker: Any
) -> None:
    start_worker("-c", "1", *FORK_PER_TASK, "-l", "warning")
    with pytest.raises(TaskFailed) as failed:
        client.send_task("e2eapp.unstorable").get(timeout=60)
    assert failed.value.exc_type == "ResultNotSerializable"
    assert client.send_task("e2eapp.add", (2, 2)).get(timeout=30) == 4


def test_max_memory_per_child_recycles_by_private_memory(client: Forkq, start_worker: Any) -> None:
    worker = start_worker("-c", "1", "--max-memory-per-child", "48", "-l", "info")
    wait_until_serving(client, worker)
    hog_pid = client.send_task("e2eapp.hog", (64,)).get(timeout=30)
    worker.wait_for_log(f"pid {hog_pid}): USS")
    assert "recycling child 0" in worker.log()
    assert client.send_task("e2eapp.ping").get(timeout=30) != hog_pid
