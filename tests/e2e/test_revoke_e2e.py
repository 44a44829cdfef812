"""Revoking tasks on real workers, on every engine (RabbitMQ with its results in SQLite): a
revoked task never runs, whether it was queued, delayed, prefetched by a child, sent while no
worker ran, or is running now (terminate); its result is REVOKED, and its group and chord fail.

Each test has its own control directory, so a revoke tells only the workers it started."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from forkq import Forkq, TaskFailed, TaskRevoked, chord, group
from forkq.engines.contract import Consumer
from forkq.engines.registry import carries_control
from tests.conftest import E2E_APP, StartedSignal, results_url_for, wait_until_serving

pytestmark = pytest.mark.timeout(120)

REVOKE_TASKS = """

@app.task
def touch(path):  # leaves a line in `path` each time it runs
    with open(path, "a") as ran:
        ran.write("ran\\n")
    return path

@app.task
def held(announce, runs, release):  # runs until the test writes a line to `release`
    with open(runs, "a") as ran:
        ran.write("started\\n")
    with open(announce, "w") as started:
        started.write(f"started {os.getpid()}\\n")
    try:
        with open(release) as go:
            return go.readline().strip()
    finally:
        with open(runs, "a") as ran:
            ran.write("finally\\n")

@app.task(time_limit=4)
def stubborn(announce):  # survives its SIGTERM, and runs on into its hard time limit
    with open(announce, "w") as started:
        started.write(f"started {os.getpid()}\\n")
    try:
        time.sleep(60)
    except BaseException:
        time.sleep(60)

@app.task
def record_all(values, path):
    with open(path, "w") as out:
        out.write(repr(values))
"""


@pytest.fixture
def broker_url(every_broker_url: str) -> str:
    return every_broker_url


@pytest.fixture
def e2e_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "e2eapp.py").write_text(E2E_APP + REVOKE_TASKS)
    # Workers and this process's revokes meet in a control directory of the test's own.
    monkeypatch.setenv("FORKQ_CONTROL_DIR", str(tmp_path / "control"))
    return tmp_path


class Held:
    """A `held` task: the test awaits its start, and releases it."""

    def __init__(self, client: Forkq, directory: Path) -> None:
        self.started = StartedSignal(directory)
        self.runs = directory / "held-runs"
        self.release_path = str(directory / "release.fifo")
        os.mkfifo(self.release_path)
        args = (self.started.path, str(self.runs), self.release_path)
        self.result = client.send_task("e2eapp.held", args)

    def release(self) -> None:
        fd = os.open(self.release_path, os.O_WRONLY)  # once the task opens it to read
        os.write(fd, b"go\n")
        os.close(fd)


def touch(client: Forkq, path: Path, **options: Any) -> Any:
    return client.send_task("e2eapp.touch", (str(path),), **options)


def ran(path: Path) -> int:
    return path.read_text().count("ran") if path.exists() else 0


def test_a_task_revoked_while_queued_behind_another_never_runs(
    client: Forkq, start_worker: Any, e2e_dir: Path
) -> None:
    worker = start_worker("-c", "1", "--prefetch", "1")
    wait_until_serving(client, worker)
    blocker = Held(client, e2e_dir)
    blocker.started.wait()
    queued = touch(client, e2e_dir / "queued")
    after = touch(client, e2e_dir / "after")
    told = client.revoke(queued.id)
    assert [r["pid"] for r in told.replies] == [worker.pid] and told.silent == ()
    blocker.release()
    assert after.get(timeout=30) == str(e2e_dir / "after")
    with pytest.raises(TaskRevoked, match=f"task {queued.id} was revoked: not run"):
        queued.get(timeout=30)
    assert ran(e2e_dir / "queued") == 0 and queued.state == "REVOKED"
    assert client.broker.dead_letters() == []  # acked, not dead-lettered


def test_a_task_revoked_while_no_worker_runs_is_not_run_by_a_worker_started_later(
    client: Forkq, start_worker: Any, e2e_dir: Path
) -> None:
    revoked = touch(client, e2e_dir / "revoked")
    kept = touch(client, e2e_dir / "kept")
    assert client.revoke([revoked.id]).replies == ()  # no worker to tell: stored only
    start_worker("-c", "1")
    assert kept.get(timeout=30) == str(e2e_dir / "kept")
    with pytest.raises(TaskRevoked):
        revoked.get(timeout=30)
    assert ran(e2e_dir / "revoked") == 0


def test_a_message_prefetched_by_a_child_is_not_run_once_revoked(
    client: Forkq, start_worker: Any, e2e_dir: Path
) -> None:
    """The child holds the batch before the revoke: it reads the revoked ids again before
    its next task because its master posted the revoke, well within the backstop's 5 s."""
    blocker = Held(client, e2e_dir)
    paths = [e2e_dir / f"prefetched-{i}" for i in range(3)]
    results = [touch(client, path) for path in paths]
    worker = start_worker("-c", "1", "--prefetch", "4", "-l", "info")  # it takes all four
    blocker.started.wait()
    if carries_control(client.settings.broker_url):  # told over the broker, once it listens
        worker.wait_for_log("control agent of")
    probe = client.broker.consumer(Consumer.of_child("probe", 0, os.getpid()), client.backend)
    assert probe.fetch([client.settings.default_queue], 10, 0) == []  # all held by the child
    started = time.monotonic()
    client.revoke(results[1].id)
    blocker.release()
    assert results[2].get(timeout=30) == str(paths[2])
    assert time.monotonic() - started < 5  # the bulletin, not the backstop
    with pytest.raises(TaskRevoked):
        results[1].get(timeout=1)
    assert [ran(p) for p in paths] == [1, 0, 1]


def test_a_delayed_task_revoked_is_discarded_when_it_comes_due(
    client: Forkq, start_worker: Any, e2e_dir: Path
) -> None:
    worker = start_worker("-c", "1", "-l", "info")
    wait_until_serving(client, worker)
    # Due after the revocation has reached the worker: its children are told in milliseconds
    # on a quiet machine, in a second or more on a loaded one (a CI run of 2 vCPUs).
    later = touch(client, e2e_dir / "later", countdown=4.0)
    client.revoke(later.id)
    with pytest.raises(TaskRevoked, match="not run"):
        later.get(timeout=30)
    assert ran(e2e_dir / "later") == 0
    worker.wait_for_log(f"[{later.id}] revoked: discarded, not run")


@pytest.mark.parametrize(
    ("signal_name", "ended"), [("SIGTERM", "exit code 0"), ("SIGKILL", "killed by SIGKILL")]
)
def test_terminate_ends_the_running_task_which_is_revoked_and_not_run_again(
    client: Forkq,
    start_worker: Any,
    e2e_dir: Path,
    broker_url: str,
    signal_name: str,
    ended: str,
) -> None:
    worker = start_worker("-c", "1", "--prefetch", "1", "-l", "info")
    wait_until_serving(client, worker)
    running = Held(client, e2e_dir)
    pid = running.started.wait()
    done = forkq(
        e2e_dir,
        broker_url,
        "control",
        "revoke",
        running.result.id,
        "--terminate",
        "--signal",
        signal_name,
    )
    assert done.returncode == 0, done.stderr
    assert f"terminated {running.result.id}: {signal_name} to child pid {pid}" in done.stdout
    worker.wait_for_log(f"child 0 (pid {pid}) {ended}")
    with pytest.raises(TaskRevoked, match="terminated while running"):
        running.result.get(timeout=30)
    worker.wait_for_log(f"[{running.result.id}] revoked: discarded, not run")  # it came back
    wait_until_serving(client, worker)  # a new child serves
    assert pid not in worker.children()
    # SIGTERM interrupts the task, whose `finally` runs; SIGKILL ends it where it stands.
    lines = running.runs.read_text().split()
    assert lines == (["started", "finally"] if signal_name == "SIGTERM" else ["started"])
    with pytest.raises(TaskRevoked, match="terminated while running"):  # the master's record
        running.result.get(timeout=1)


@pytest.mark.parametrize("every_broker_url", ["sqlite"], indirect=True)
def test_a_terminated_task_that_then_passes_its_time_limit_stays_revoked(
    client: Forkq, start_worker: Any, e2e_dir: Path
) -> None:
    worker = start_worker("-c", "1", "--prefetch", "1", "-l", "info")
    wait_until_serving(client, worker)
    started = StartedSignal(e2e_dir)
    result = client.send_task("e2eapp.stubborn", (started.path,))
    pid = started.wait()
    assert [t["pid"] for t in client.revoke(result.id, terminate=True).terminated] == [pid]
    worker.wait_for_log(f"child 0 (pid {pid}) ran")  # the time limit's SIGKILL, after the TERM
    with pytest.raises(TaskRevoked, match="terminated while running"):
        result.get(timeout=30)
    worker.wait_for_log(f"[{result.id}] revoked: discarded, not run")  # back, and discarded
    assert client.broker.dead_letters() == []


def test_a_revoked_member_fails_its_group_and_its_chords_body_does_not_run(
    client: Forkq, start_worker: Any, e2e_dir: Path
) -> None:
    def touching(name: str) -> Any:
        return client.signature("e2eapp.touch", (str(e2e_dir / name),))

    members = group(touching(f"g{i}") for i in range(3)).delay()
    body_path = e2e_dir / "body"
    body = chord(
        [touching(f"c{i}") for i in range(3)],
        client.signature("e2eapp.record_all", (str(body_path),)),
    ).delay()
    header = body.parent
    members.revoke()  # every member of the group
    client.revoke(header[1].id)  # type: ignore[index]  # one member of the chord
    start_worker("-c", "2")
    values = members.get(timeout=30, propagate=False)
    assert all(isinstance(v, TaskRevoked) for v in values)
    with pytest.raises(TaskRevoked, match="was revoked"):
        members.get(timeout=1)
    with pytest.raises(TaskFailed, match=f"TaskRevoked: task {header[1].id} was revoked"):  # type: ignore[index]
        body.get(timeout=30)
    assert not body_path.exists()
    assert [ran(e2e_dir / f"g{i}") for i in range(3)] == [0, 0, 0]


def test_a_revocation_that_expired_no_longer_holds(
    client: Forkq, start_worker: Any, e2e_dir: Path
) -> None:
    late = touch(client, e2e_dir / "late")
    client.revoke(late.id, ttl=0.5)
    time.sleep(0.6)  # the expiry passing is what is tested
    start_worker("-c", "1")
    assert late.get(timeout=30) == str(e2e_dir / "late")


def forkq(cwd: Path, broker_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The `forkq` command on this test's broker and results, as a user runs it."""
    env = {**os.environ, "FORKQ_BROKER_URL": broker_url}
    if results := results_url_for(broker_url, cwd):
        env["FORKQ_RESULT_BACKEND"] = results
    return subprocess.run(
        [sys.executable, "-m", "forkq", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_revoke_command_errors_are_one_line(e2e_dir: Path, sqlite_url: str) -> None:
    for args, error in (
        (["control", "revoke"], "Missing argument 'ID...'"),
        (["control", "revoke", "x", "--signal", "KILL"], "--signal goes with --terminate"),
        (
            ["control", "revoke", "x", "--terminate", "--signal", "INT"],
            "SIGINT would not end the child",
        ),
        (["control", "revoke", "x", "--terminate", "--signal", "NOPE"], "unknown signal 'NOPE'"),
    ):
        done = forkq(e2e_dir, sqlite_url, *args)
        assert done.returncode == 2, done
        assert done.stderr.count("\n") == 1 and error in done.stderr, done.stderr
