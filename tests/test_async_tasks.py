"""`async def` tasks and after-fork hooks: run on each child's own event loop."""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest

from forkq import ConfigurationError, Forkq, SoftTimeLimitExceeded, TaskFailed
from forkq.aio import close_process_loop, process_loop, run_coroutine, run_hook
from tests.conftest import StartedSignal, wait_until_serving

pytestmark = pytest.mark.timeout(60)

ASYNC_APP = textwrap.dedent(
    """
    import asyncio, os
    from forkq import Forkq

    app = Forkq("e2e")

    @app.task
    def ping():
        return os.getpid()

    HOOK = {}  # what the async after-fork hook made, in the process that ran it

    @app.on_after_fork
    async def open_clients():
        event = asyncio.Event()
        waiter = asyncio.ensure_future(event.wait())
        await asyncio.sleep(0)  # the waiter waits: the event is bound to this loop now
        event.set()
        await waiter
        HOOK.update(pid=os.getpid(), loop=id(asyncio.get_running_loop()), event=event)

    @app.task
    async def add(x, y):
        await asyncio.sleep(0)
        return x + y

    @app.task
    async def where():
        event = HOOK["event"]  # raises if bound to another loop than this task's
        event.clear()
        asyncio.get_running_loop().call_soon(event.set)
        await event.wait()
        loop = id(asyncio.get_running_loop())
        return {"pid": os.getpid(), "loop": loop, "hook": [HOOK["pid"], HOOK["loop"]]}

    @app.task(ignore_result=True)
    async def announce(fifo):
        await asyncio.sleep(0)
        with open(fifo, "w") as out:
            out.write(f"started {os.getpid()}\\n")

    BACKGROUND = set()

    @app.task
    async def leave_running(path):  # a task it does not await, told to stop as the child exits
        async def linger():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                with open(path, "w") as out:
                    out.write("cancelled")
                raise
        BACKGROUND.add(asyncio.ensure_future(linger()))
        await asyncio.sleep(0)

    @app.task
    async def nap(seconds):
        await asyncio.sleep(seconds)
        return "woke"

    @app.task
    async def nap_and_clean_up(seconds):
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError as cancelled:
            return f"cleaned up: {cancelled.args[0] if cancelled.args else ''}"

    @app.task(time_limit=0.8)
    async def stubborn_nap(seconds):  # swallows its cancellation: the hard limit ends it
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            await asyncio.sleep(seconds)
    """
)

FORK_PER_TASK = ("--max-tasks-per-child", "1")
in_child_or_own_process = pytest.mark.parametrize(
    "mode", [(), FORK_PER_TASK], ids=["in-child", "fork-per-task"]
)


@pytest.fixture
def e2e_dir(tmp_path: Path) -> Path:
    (tmp_path / "e2eapp.py").write_text(ASYNC_APP)
    return tmp_path


@in_child_or_own_process
def test_async_tasks_run_on_the_loop_of_the_async_after_fork_hook(
    client: Forkq, start_worker: Any, mode: tuple[str, ...]
) -> None:
    worker = start_worker("-c", "2", "-l", "warning", *mode)
    wait_until_serving(client, worker)
    assert client.send_task("e2eapp.add", (2, 3)).get(timeout=20) == 5
    runs = [client.send_task("e2eapp.where").get(timeout=20) for _ in range(4)]
    for run in runs:  # the hook ran where the task ran, and made its objects on that loop
        assert run["hook"] == [run["pid"], run["loop"]]
    if not mode:  # each child keeps one loop for all its tasks
        loops = {run["pid"]: set() for run in runs}
        for run in runs:
            loops[run["pid"]].add(run["loop"])
        assert all(len(ids) == 1 for ids in loops.values())
    assert "never awaited" not in worker.log()


def test_an_async_task_that_ignores_its_result_really_runs(
    client: Forkq, start_worker: Any, e2e_dir: Path
) -> None:
    worker = start_worker("-c", "1", "-l", "warning")
    wait_until_serving(client, worker)
    started = StartedSignal(e2e_dir)
    client.send_task("e2eapp.announce", (started.path,))
    assert started.wait(timeout=20) in worker.children()


@in_child_or_own_process
def test_time_limits_cancel_an_awaiting_coroutine_then_kill_one_that_goes_on(
    client: Forkq, start_worker: Any, mode: tuple[str, ...]
) -> None:
    worker = start_worker("-c", "1", "--soft-time-limit", "0.3", "-l", "warning", *mode)
    wait_until_serving(client, worker)
    before = client.send_task("e2eapp.where").get(timeout=20)
    with pytest.raises(TaskFailed) as failed:
        client.send_task("e2eapp.nap", (30,)).get(timeout=20)
    assert failed.value.exc_type == "SoftTimeLimitExceeded"
    assert "soft time limit (0.3s) exceeded" in str(failed.value)
    cleaned = client.send_task("e2eapp.nap_and_clean_up", (30,)).get(timeout=20)
    assert cleaned == "cleaned up: soft time limit (0.3s) exceeded"
    # The same child goes on, on the same loop.
    assert client.send_task("e2eapp.nap", (0.05,)).get(timeout=20) == "woke"
    after = client.send_task("e2eapp.where").get(timeout=20)
    if not mode:
        assert after == before
    with pytest.raises(TaskFailed) as killed:
        client.send_task("e2eapp.stubborn_nap", (30,)).get(timeout=20)
    assert killed.value.exc_type == "TimeLimitExceeded"
    assert client.send_task("e2eapp.add", (1, 1)).get(timeout=20) == 2


def test_the_loop_is_closed_as_the_child_exits(
    client: Forkq, start_worker: Any, tmp_path: Path
) -> None:
    worker = start_worker("-c", "1", "-l", "warning")
    wait_until_serving(client, worker)
    marker = tmp_path / "linger"
    client.send_task("e2eapp.leave_running", (str(marker),)).get(timeout=20)
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert marker.read_text() == "cancelled"


def test_calling_an_async_task_directly_gives_the_coroutine() -> None:
    app = Forkq("t", broker="memory://aio")

    @app.task
    async def add(x: int, y: int) -> int:
        await asyncio.sleep(0)
        return x + y

    @app.task(bind=True)
    async def named(self: Any) -> str:
        return str(self.name)

    assert asyncio.run(add(1, 2)) == 3
    assert asyncio.run(named()).endswith(".named")


def test_a_before_fork_hook_may_not_be_async() -> None:
    app = Forkq("t", broker="memory://aio")

    async def preload() -> None: ...

    with pytest.raises(ConfigurationError, match="master, which has no event loop"):
        app.on_before_fork(preload)  # type: ignore[arg-type]
    assert app.before_fork_hooks == []


def test_one_loop_per_process_kept_until_closed_and_never_shared_with_a_fork() -> None:
    loop = process_loop()
    try:
        assert process_loop() is loop
        assert run_coroutine(asyncio.sleep(0, "done")) == "done"
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the forked process makes a loop of its own
            os.write(write, b"new" if process_loop() is not loop else b"inherited")
            os._exit(0)
        os.close(write)
        assert os.read(read, 20) == b"new"
        os.close(read)
        assert os.waitpid(pid, 0)[1] == 0
    finally:
        close_process_loop()
    assert loop.is_closed() and process_loop() is not loop
    close_process_loop()


def test_a_soft_limit_expiring_while_the_coroutine_awaits() -> None:
    async def nap() -> None:
        await asyncio.sleep(30)

    try:
        with pytest.raises(SoftTimeLimitExceeded, match=r"soft time limit \(0.05s\)"):
            run_coroutine(nap(), soft_limit=0.05)
        assert run_coroutine(asyncio.sleep(0.1, "no limit left over")) == "no limit left over"
    finally:
        close_process_loop()


def test_a_coroutine_cannot_be_run_inside_a_running_loop() -> None:
    async def add() -> int:
        return 3

    async def caller() -> None:
        with pytest.raises(RuntimeError, match="an event loop is already running"):
            run_coroutine(add())
        assert await add() == 3

    asyncio.run(caller())


def test_an_async_hook_runs_to_its_end() -> None:
    ran: list[int] = []

    async def hook() -> None:
        await asyncio.sleep(0)
        ran.append(id(asyncio.get_running_loop()))

    try:
        run_hook(hook)
        run_hook(lambda: ran.append(0))
        assert ran == [id(process_loop()), 0]
    finally:
        close_process_loop()
