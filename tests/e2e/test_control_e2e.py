"""Inspect and control over the broker: two real workers, each with its agent, reached through
Redis (a plain redis:// URL) and RabbitMQ, by `app.control` and by the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from forkq import Forkq
from tests.conftest import (
    StartedSignal,
    WorkerProcess,
    amqp_test_url,
    engine_url,
    redis_test_url,
    results_url_for,
    wait_until_serving,
)

pytestmark = pytest.mark.timeout(120)
Start = Callable[..., WorkerProcess]


@pytest.fixture(params=["redis", "amqp"])
def broker_url(request: pytest.FixtureRequest) -> Iterator[str]:
    url = redis_test_url() if request.param == "redis" else amqp_test_url()
    yield from engine_url(request.param, url)


@pytest.fixture(autouse=True)
def control_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "control"
    monkeypatch.setenv("FORKQ_CONTROL_DIR", str(path))  # inherited by the workers
    return path


def listening(start_worker: Start, name: str, *args: str, **kw: Any) -> WorkerProcess:
    """A worker named `name` (-c 1 unless given), once its agent listens."""
    worker = start_worker("-n", name, *(args or ("-c", "1")), "-l", "info", **kw)
    worker.wait_for_log(f"control agent of {name} listening")
    return worker


def two(start_worker: Start, *args: str, **kw: Any) -> tuple[WorkerProcess, WorkerProcess]:
    return listening(start_worker, "w1", *args, **kw), listening(start_worker, "w2", *args, **kw)


def cli(e2e_dir: Path, broker_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    base = ["-A", "e2eapp", "--broker", broker_url]
    if results := results_url_for(broker_url, e2e_dir):
        base += ["--backend", results]
    command, rest = args[0], args[1:]
    if command == "control":
        command, rest = f"control {rest[0]}", rest[1:]
    return subprocess.run(
        [sys.executable, "-m", "forkq", *command.split(), *base, *rest],
        cwd=e2e_dir,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_both_workers_answer_and_one_is_reached_by_name(
    client: Forkq, start_worker: Start, e2e_dir: Path, broker_url: str
) -> None:
    w1, w2 = two(start_worker)
    assert "  control:     over the broker, answering as w1" in w1.log()
    pings = client.control.inspect("ping", timeout=10)
    assert sorted(pings.replies) == ["w1", "w2"] and pings.complete
    stats = client.control.inspect("stats", timeout=10)
    assert {n: r["pid"] for n, r in stats.replies.items()} == {"w1": w1.pid, "w2": w2.pid}
    assert stats.replies["w1"]["queues"] == ["default"]
    only = client.control.inspect("ping", destination=["w2"], timeout=10)
    assert list(only.replies) == ["w2"] and only.complete

    done = cli(e2e_dir, broker_url, "inspect", "ping", "--destination", "w1", "--json")
    assert done.returncode == 0, done.stderr
    assert list(json.loads(done.stdout)["replies"]) == ["w1"]
    shown = cli(e2e_dir, broker_url, "inspect", "ping", "--timeout", "10")
    assert shown.returncode == 0, shown.stderr
    assert f"pong from w1 (forkq: e2e, master pid {w1.pid})" in shown.stdout
    assert f"pong from w2 (forkq: e2e, master pid {w2.pid})" in shown.stdout


def test_a_killed_worker_is_named_missing(
    client: Forkq, start_worker: Start, e2e_dir: Path, broker_url: str
) -> None:
    _w1, w2 = two(start_worker)
    w2.stop()  # SIGKILL to its whole process group: its agent cannot withdraw
    got = client.control.inspect("ping", timeout=1.0)
    assert list(got.replies) == ["w1"] and got.missing == ("w2",)
    assert "w2" in got.last_seen
    done = cli(e2e_dir, broker_url, "inspect", "ping", "--timeout", "1")
    assert done.returncode == 1
    assert "w2: missing: no reply within 1s (last announced" in done.stdout
    assert "pong from w1" in done.stdout


def test_pool_grow_and_shrink_show_in_stats(
    client: Forkq, start_worker: Start, e2e_dir: Path, broker_url: str
) -> None:
    w1, _w2 = two(start_worker)
    grown = client.control.broadcast("pool-grow", {"n": 2}, ["w1"], timeout=10)
    assert grown.replies == {"w1": {"concurrency": 3, "was": 1}}
    w1.all_children(3)
    stats = client.control.inspect("stats", timeout=10).replies
    assert (stats["w1"]["concurrency"], stats["w2"]["concurrency"]) == (3, 1)
    assert len(stats["w1"]["children"]) == 3
    done = cli(e2e_dir, broker_url, "control", "pool-shrink", "2", "--destination", "w1")
    assert done.returncode == 0, done.stderr
    assert "w1: pool 3 -> 1 children" in done.stdout
    assert client.control.inspect("stats", timeout=10).replies["w1"]["concurrency"] == 1
    refused = client.control.broadcast("pool-grow", {"n": 0}, ["w1"], timeout=10)
    assert refused.errors == {"w1": "n must be a whole number from 1, not 0"}
    unknown = client.control.broadcast("no-such-command", timeout=10)
    assert unknown.errors == {
        "w1": "unknown command 'no-such-command'",
        "w2": "unknown command 'no-such-command'",
    }


def test_add_queue_makes_a_running_worker_consume_it(
    client: Forkq, start_worker: Start, broker_url: str
) -> None:
    two(start_worker)
    waiting = client.send_task("e2eapp.add", (2, 3), queue="extra")
    added = client.control.broadcast("add-queue", {"queue": "extra"}, ["w2"], timeout=10)
    assert added.replies == {"w2": {"queues": ["default", "extra"], "changed": True}}
    assert waiting.get(timeout=30) == 5
    stats = client.control.inspect("stats", timeout=10).replies
    assert (stats["w1"]["queues"], stats["w2"]["queues"]) == (["default"], ["default", "extra"])
    dropped = client.control.broadcast("cancel-queue", {"queue": "default"}, ["w2"], timeout=10)
    assert dropped.replies["w2"]["queues"] == ["extra"]
    last = client.control.broadcast("cancel-queue", {"queue": "extra"}, ["w2"], timeout=10)
    assert "the only queue" in last.errors["w2"]


def test_shutdown_stops_one_worker_warm(
    client: Forkq, start_worker: Start, e2e_dir: Path, broker_url: str
) -> None:
    w1 = listening(start_worker, "w1", "-c", "1", "-Q", "solo")
    listening(start_worker, "w2")
    started = StartedSignal(e2e_dir)
    running = client.send_task("e2eapp.announce_then_sleep", (started.path, 1.5), queue="solo")
    started.wait()
    stopped = client.control.broadcast("shutdown", destination=["w1"], timeout=10)
    assert stopped.replies == {"w1": {"shutdown": "warm"}}
    assert w1.wait(timeout=30) == 0
    assert running.get(timeout=10) is None  # the running task finished first
    assert "warm shutdown" in w1.log()
    after = client.control.inspect("ping", timeout=10)
    assert list(after.replies) == ["w2"]
    assert after.missing == ()  # it withdrew: stopped on purpose, not missing


def test_control_without_the_secret_is_refused(
    e2e_dir: Path, start_worker: Start, broker_url: str
) -> None:
    w1, _w2 = two(start_worker, "-c", "1", env={"FORKQ_SECRET": "s3cret"})
    results = results_url_for(broker_url, e2e_dir)
    signed = Forkq("e2e", broker=broker_url, backend=results, secret="s3cret")
    unsigned = Forkq("e2e", broker=broker_url, backend=results)
    try:
        assert unsigned.control.inspect("ping", timeout=1.0).missing == ("w1", "w2")
        shut = unsigned.control.broadcast("shutdown", timeout=1.0)
        assert shut.replies == {} and shut.missing == ("w1", "w2")
        w1.wait_for_log("control: refused")  # logged, dropped; the agent goes on
        assert sorted(signed.control.inspect("ping", timeout=10).replies) == ["w1", "w2"]
    finally:
        signed.close()
        unsigned.close()


def test_the_agent_answers_registered_conf_and_scheduled(
    client: Forkq, start_worker: Start, broker_url: str
) -> None:
    listening(start_worker, "w1", env={"FORKQ_SECRET": "s3cret"})
    app = Forkq("e2e", broker=broker_url, backend=client.settings.result_backend, secret="s3cret")
    try:
        tasks = app.control.inspect("registered", timeout=10).replies["w1"]["tasks"]
        assert tasks["e2eapp.capped_sleep"] == {"time_limit": 0.5}
        assert tasks["e2eapp.add"] == {}
        settings = app.control.inspect("conf", timeout=10).replies["w1"]["settings"]
        assert settings["secret"] == "***" and settings["default_queue"] == "default"
        later = app.send_task("e2eapp.add", (1, 2), countdown=3600)
        scheduled = app.control.inspect("scheduled", timeout=10)
        if broker_url.startswith("redis"):
            [entry] = scheduled.replies["w1"]["scheduled"]
            assert (entry["id"], entry["task"], entry["queue"]) == (
                later.id,
                "e2eapp.add",
                "default",
            )
        else:  # RabbitMQ's delayed messages wait in shared TTL queues: not listed
            assert "cannot list delayed messages" in scheduled.errors["w1"]
        app.revoke(later.id)
        [revoked] = app.control.inspect("revoked", timeout=10).replies["w1"]["revoked"]
        assert revoked["id"] == later.id and revoked["expires_at"] > time.time()
    finally:
        app.close()


def test_reserved_counts_what_a_child_fetched_and_has_not_started(
    client: Forkq, start_worker: Start, e2e_dir: Path, broker_url: str
) -> None:
    if not broker_url.startswith("redis"):
        pytest.skip("RabbitMQ pushes one message at a time: a batch of 4 is not certain")
    started = StartedSignal(e2e_dir)
    calls = [client.new_message("e2eapp.announce_then_sleep", (started.path, 2))]
    calls += [client.new_message("e2eapp.add", (i, i)) for i in range(3)]
    client.publish_many(calls)
    listening(start_worker, "w1", "-c", "1", "--prefetch", "4")
    started.wait()
    reply = client.control.inspect("reserved", timeout=10).replies["w1"]
    assert reply["reserved"] == 3 and [c["reserved"] for c in reply["children"]] == [3]


def test_a_killed_agent_is_forked_again_and_answers(client: Forkq, start_worker: Start) -> None:
    worker = listening(start_worker, "w1")
    agent = worker.agent()
    assert agent is not None
    os.kill(agent, signal.SIGKILL)
    worker.wait_for_log(f"agent (pid {agent}) exited (-9); forked again")
    worker.wait_for_log("control agent of w1 listening", count=2)
    assert client.control.inspect("ping", timeout=10).complete
    assert worker.agent() not in (None, agent)


def test_no_control_forks_no_agent(client: Forkq, start_worker: Start) -> None:
    worker = start_worker("-n", "w1", "-c", "1", "--no-control")
    wait_until_serving(client, worker)
    assert "  control:     this host's control socket only (--no-control)" in worker.log()
    assert worker.agent() is None
    assert client.control.inspect("ping", timeout=0.5).replies == {}
