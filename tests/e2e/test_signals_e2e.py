"""The master's signals beyond shutdown: HUP, TTIN/TTOU, USR1."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from forkq import Forkq
from tests.conftest import StartedSignal, wait_until_serving

pytestmark = pytest.mark.timeout(120)


def test_hup_reloads_code_in_the_same_process_and_finishes_in_flight_tasks(
    client: Forkq, start_worker: Any, e2e_dir: Path
) -> None:
    pidfile = e2e_dir / "worker.pid"
    worker = start_worker("-c", "2", "--prefetch", "1", "--pidfile", str(pidfile), "-l", "info")
    wait_until_serving(client, worker)
    old_children = set(worker.children())
    started = StartedSignal(e2e_dir)
    in_flight = client.send_task("e2eapp.announce_then_sleep", (started.path, 1.0))
    started.wait()
    with open(e2e_dir / "e2eapp.py", "a") as source:
        source.write("\n\n@app.task\ndef version():\n    return 'v2'\n")
    worker.signal(signal.SIGHUP)
    worker.wait_for_log("starting 2 children", count=2)  # the re-executed master is up
    assert client.send_task("e2eapp.version").get(timeout=60) == "v2"
    in_flight.get(timeout=30)  # it finished; it was not killed or run twice
    assert in_flight.successful()
    assert worker.proc.poll() is None
    assert pidfile.read_text().strip() == str(worker.pid)  # same master, same pidfile
    assert not old_children & set(worker.children())
    assert "re-executing" in worker.log()


def test_hup_refuses_code_that_does_not_load_and_the_old_children_serve_on(
    client: Forkq, start_worker: Any, e2e_dir: Path
) -> None:
    pidfile = e2e_dir / "worker.pid"
    worker = start_worker("-c", "2", "--pidfile", str(pidfile), "-l", "info")
    wait_until_serving(client, worker)
    children = worker.all_children(2)
    source = e2e_dir / "e2eapp.py"
    good = source.read_text()
    source.write_text(good + "\n\ndef broken(:\n")
    worker.signal(signal.SIGHUP)
    worker.wait_for_log("HUP refused")
    assert client.send_task("e2eapp.add", (1, 2)).get(timeout=30) == 3
    assert worker.children() == children  # the same children, never stopped
    assert pidfile.read_text() == f"{worker.pid}\n"
    refused = [line for line in worker.log().splitlines() if "ERROR" in line]
    assert len(refused) == 1 and "SyntaxError" in refused[0], worker.log()

    source.write_text(good + "\n\n@app.task\ndef version():\n    return 'v2'\n")
    worker.signal(signal.SIGHUP)
    worker.wait_for_log("starting 2 children", count=2)  # the re-executed master is up
    assert client.send_task("e2eapp.version").get(timeout=60) == "v2"
    assert worker.proc.poll() is None


def test_ttin_grows_and_ttou_retires_only_idle_children(
    client: Forkq, start_worker: Any, e2e_dir: Path
) -> None:
    worker = start_worker("-c", "2", "--prefetch", "1", "-l", "debug")
    wait_until_serving(client, worker)
    worker.signal(signal.SIGTTIN)
    worker.wait_for_log("spawned child 2 ")
    assert len(worker.children()) == 3

    started = StartedSignal(e2e_dir)
    client.send_task("e2eapp.announce_then_sleep", (started.path, 60))
    busy = started.wait()
    for size in (2, 1):
        worker.signal(signal.SIGTTOU)
        worker.wait_for_log(f"pool shrinks to {size} children")
    worker.wait_for_log("retiring idle child", count=2)
    worker.wait_for_log("exit code 0", count=2)
    assert worker.children() == [busy]  # the busy child was never touched
    worker.signal(signal.SIGQUIT)
    assert worker.wait(timeout=30) == 0


def test_usr1_writes_every_process_stack(client: Forkq, start_worker: Any) -> None:
    worker = start_worker("-c", "2", "-l", "info")
    wait_until_serving(client, worker)
    worker.signal(signal.SIGUSR1)
    worker.wait_for_log("USR1: master")
    worker.wait_for_log("most recent call first", count=2)  # one dump per child
    assert client.send_task("e2eapp.add", (1, 2)).get(timeout=30) == 3  # nobody died of it
    assert len(worker.children()) == 2


def test_a_child_forked_during_a_hup_check_keeps_none_of_the_masters_descriptors(
    client: Forkq, start_worker: Any, e2e_dir: Path
) -> None:
    """Not the check's pipe or pidfd, not the pidfile: only its own output pipe is shared."""
    pidfile, gate = e2e_dir / "worker.pid", e2e_dir / "gate.fifo"
    os.mkfifo(gate)
    worker = start_worker("-c", "1", "--pidfile", str(pidfile), "-l", "info")
    wait_until_serving(client, worker)
    [first] = worker.all_children(1)
    with open(e2e_dir / "e2eapp.py", "a") as source:  # the check waits at the gate
        source.write(
            f"\nif os.environ.get('FORKQ_RELOAD_CHECK'):\n    open({str(gate)!r}).read()\n"
        )
    worker.signal(signal.SIGHUP)
    try:
        worker.wait_for_log("checking that the new code loads")  # the check is spawned
        os.kill(first, signal.SIGKILL)
        wait_until_serving(client, worker)  # the child forked in its place serves
        [child] = [
            pid for pid in worker.children() if _cmdline(pid).startswith(b"forkq: e2e child")
        ]
        links = _fd_links(child)
        assert str(pidfile) not in links
        assert "anon_inode:[pidfd]" not in links  # the check's (a child opens none)
        own_output = os.readlink(f"/proc/{child}/fd/1")
        shared = {link for link in links if link.startswith("pipe:")} & set(_fd_links(worker.pid))
        assert shared == {own_output}
    finally:
        with open(gate, "w"):  # the check goes on, and the worker reloads
            pass
    worker.wait_for_log("starting 1 children", count=2)


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def _fd_links(pid: int) -> list[str]:
    links = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            links.append(os.readlink(fd))
    return links
