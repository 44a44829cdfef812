"""`forkq events`: run as a user runs it, on events written through the backend API, on
SQLite and Redis; and the live view drawn once."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from rich.console import Console

from forkq.engines.contract import ResultBackend
from forkq.engines.redis.keys import events_key
from forkq.engines.registry import open_backend
from forkq.events import (
    ChildRow,
    TaskEvent,
    TaskEventKind,
    WorkerEvent,
    WorkerEventKind,
    encode,
)
from forkq.events.state import EventsState
from tests.commands import forkq
from tests.conftest import REDIS, engine_url, redis_test_url
from tests.engines.test_conformance import BACKENDS

STORES = ("redis", "sqlite")
CHILD = ChildRow(0, 4242, "busy", "t-1", "app.add", 7, rss=30 << 20, pss=20 << 20, uss=9 << 20)


@pytest.fixture(params=STORES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from engine_url(request.param, BACKENDS[request.param](tmp_path))


@pytest.fixture
def store(url: str) -> Iterator[ResultBackend]:
    backend = open_backend(url)
    yield backend
    backend.close()


def online(at: float) -> WorkerEvent:
    return WorkerEvent(WorkerEventKind.ONLINE, "w-1", "host1", 100, at, ("default",), 2)


def heartbeat(at: float) -> WorkerEvent:
    return WorkerEvent(
        WorkerEventKind.HEARTBEAT, "w-1", "host1", 100, at, ("default",), 2, (CHILD,), 50 << 20
    )


def done(task_id: str, at: float) -> TaskEvent:
    return TaskEvent(TaskEventKind.SUCCEEDED, task_id, "app.add", "default", at, "w-1", 0, 0.25)


def lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


class TestJson:
    def test_every_kept_event_with_its_offset_and_type(
        self, store: ResultBackend, url: str, tmp_path: Path
    ) -> None:
        now = time.time()
        store.add_events(
            [encode(online(now)), encode(heartbeat(now)), encode(done("t-1", now))], 100
        )
        found = lines(
            forkq(tmp_path, "events", "--broker", url, "--json", "--from", "start", "--no-follow")
        )
        assert [(e["type"], e["kind"]) for e in found] == [
            ("worker", "online"),
            ("worker", "heartbeat"),
            ("task", "succeeded"),
        ]
        assert found[1]["children"][0]["rss"] == 30 << 20 and found[2]["runtime"] == 0.25
        assert found[2]["offset"] == store.last_event_offset()

    def test_a_restarted_monitor_reads_on_from_its_last_offset(
        self, store: ResultBackend, url: str, tmp_path: Path
    ) -> None:
        store.add_events([encode(done("t-1", 1.0)), encode(done("t-2", 2.0))], 100)
        first = lines(
            forkq(tmp_path, "events", "--broker", url, "--json", "--from", "start", "--no-follow")
        )
        store.add_events([encode(done("t-3", 3.0))], 100)
        last = first[-1]["offset"]
        again = lines(
            forkq(tmp_path, "events", "--broker", url, "--json", "--from", last, "--no-follow")
        )
        assert [e["task_id"] for e in again] == ["t-3"]

    def test_a_body_that_is_no_event_is_skipped_with_its_offset(
        self, store: ResultBackend, url: str, tmp_path: Path
    ) -> None:
        store.add_events([b"\xc1junk", encode(done("t-1", 1.0))], 100)
        result = forkq(tmp_path, "events", "--broker", url, "--json", "--no-follow")
        assert [e["task_id"] for e in lines(result)] == ["t-1"]
        assert "skipped the body at offset" in result.stderr

    def test_now_with_no_follow_prints_nothing(
        self, store: ResultBackend, url: str, tmp_path: Path
    ) -> None:
        store.add_events([encode(done("t-1", 1.0))], 100)
        assert (
            lines(
                forkq(tmp_path, "events", "--broker", url, "--json", "--from", "now", "--no-follow")
            )
            == []
        )


class TestFollow:
    def test_new_events_are_printed_as_they_come_and_sigterm_ends_it(
        self, store: ResultBackend, url: str, tmp_path: Path
    ) -> None:
        with following(url, tmp_path) as proc:
            store.add_events([encode(done("t-1", 1.0))], 100)
            assert read_line(proc, 15)["task_id"] == "t-1"
            store.add_events([encode(done("t-2", 2.0))], 100)
            assert read_line(proc, 15)["task_id"] == "t-2"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0

    def test_a_reader_that_closes_the_pipe_ends_it_quietly(
        self, store: ResultBackend, url: str, tmp_path: Path
    ) -> None:
        store.add_events([encode(done(f"t-{i}", 1.0)) for i in range(3000)], 10_000)  # > a pipe
        with following(url, tmp_path) as proc:
            assert read_line(proc, 15)["task_id"] == "t-0"
            proc.stdout.close()  # type: ignore[union-attr]
            assert proc.wait(timeout=10) == 0
            assert proc.stderr.read() == ""  # type: ignore[union-attr]


def test_following_goes_on_past_a_key_another_program_broke(tmp_path: Path) -> None:
    import redis

    url = next(engine_url("redis", redis_test_url()))  # fails or skips without a server
    key = events_key(url.split("prefix=")[1].split("&")[0])
    store, client = open_backend(url), redis.Redis.from_url(REDIS)
    store.add_events([encode(done("t-1", 1.0))], 100)
    try:
        with following(url, tmp_path) as proc:
            assert read_line(proc, 15)["task_id"] == "t-1"
            client.delete(key)
            client.set(key, "not a stream")  # WRONGTYPE for every read
            assert proc.stderr is not None
            with selectors.DefaultSelector() as selector:
                selector.register(proc.stderr, selectors.EVENT_READ)
                assert selector.select(15), "no warning"
            assert "warning" in proc.stderr.readline()
            client.delete(key)
            store.add_events([encode(done("t-2", 2.0))], 100)
            assert read_line(proc, 15)["task_id"] == "t-2"
    finally:
        store.close()
        client.delete(key)
        client.close()


@contextlib.contextmanager
def following(url: str, cwd: Path) -> Iterator[subprocess.Popen[str]]:
    """`forkq events --json --from start`, following, as a user runs it; killed after."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORKQ_")}
    command = [sys.executable, "-m", "forkq", "events", "--broker", url, "--json"]
    proc = subprocess.Popen(
        [*command, "--from", "start"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def read_line(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        assert selector.select(timeout), f"no line within {timeout}s"
    return json.loads(proc.stdout.readline())  # type: ignore[no-any-return]


class TestErrors:
    def test_a_malformed_from_is_a_one_line_usage_error(self, url: str, tmp_path: Path) -> None:
        result = forkq(tmp_path, "events", "--broker", url, "--from", "yesterday", "--no-follow")
        assert result.returncode == 2 and result.stdout == ""
        [line] = result.stderr.splitlines()
        assert "--from" in line and "an event offset" in line and "'yesterday'" in line

    def test_rabbitmq_without_a_result_backend_names_the_setting(self, tmp_path: Path) -> None:
        result = forkq(
            tmp_path, "events", "--broker", "amqp://guest:guest@127.0.0.1:5672/%2F", "--no-follow"
        )
        assert result.returncode == 2
        [line] = result.stderr.splitlines()
        assert "events_url" in line and "result_backend" in line

    def test_events_url_names_another_store(self, tmp_path: Path) -> None:
        other = f"sqlite:///{tmp_path}/events.sqlite3"
        backend = open_backend(other)
        backend.add_events([encode(done("t-9", 1.0))], 10)
        backend.close()
        result = forkq(tmp_path, "events", "--events-url", other, "--json", "--no-follow")
        assert [e["task_id"] for e in lines(result)] == ["t-9"]


class TestLiveView:
    def test_a_worker_its_childrens_memory_and_a_task(self) -> None:
        from forkq.cli.events_render import render

        state = EventsState()
        now = time.time()
        row = msgspec.structs.replace(CHILD, started_at=now - 3.21, restarts=5)
        beat = msgspec.structs.replace(heartbeat(now - 1), children=(row,))
        for event in (online(now - 2), beat, done("t-1", now)):
            state.fold_bodies([encode(event)])
        console = Console(record=True, width=200)
        console.print(render(state, now, "redis://x/0", 10))
        text = console.export_text()
        assert "host1" in text and "online" in text and "50.0 MiB" in text  # the master
        assert "4242" in text and "30.0 MiB" in text and "9.0 MiB" in text  # the child
        child_line = next(line for line in text.splitlines() if "4242" in line)
        assert "3.2s" in child_line and " 5 " in child_line  # running for, restarts
        assert "succeeded" in text and "t-1" in text and "0.250s" in text

    def test_strings_from_the_store_are_shown_as_they_are(self) -> None:
        from forkq.cli.events_render import render

        state = EventsState()
        hostile = TaskEvent(
            TaskEventKind.FAILED, "t-1", "[red]app[/red]\x1b[2J", "q", 1.0, reason="[link=x]y"
        )
        state.fold(hostile)
        console = Console(record=True, width=200)
        console.print(render(state, 2.0, "sqlite:///x", 10))
        text = console.export_text()
        assert "[red]app[/red]\\x1b[2J" in text and "[link=x]y" in text
        assert "\x1b" not in console.export_text(styles=False)

    def test_a_worker_silent_for_three_heartbeats_is_lost(self) -> None:
        from forkq.cli.events_render import render

        state = EventsState()
        state.fold(heartbeat(100.0))
        state.fold(heartbeat(101.0))
        console = Console(record=True, width=200)
        console.print(render(state, 110.0, "sqlite:///x", 10))
        assert "lost" in console.export_text()
