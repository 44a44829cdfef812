"""Log aggregation: whole lines from children, tagged, never interleaved."""

from __future__ import annotations

import io
import json
import logging
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forkq import Forkq
from forkq.logs import JsonFormatter, Origin, _ChildRecordFormatter, relay
from forkq.pool.output import MAX_LINE, LineBuffer
from tests.conftest import wait_until_serving


class TestLineBuffer:
    def test_splits_and_keeps_the_partial_line(self) -> None:
        buffer = LineBuffer()
        assert buffer.feed(b"one\ntw") == ["one"]
        assert buffer.feed(b"o\nthree") == ["two"]
        assert buffer.flush() == ["three"]
        assert buffer.flush() == []

    def test_an_endless_line_comes_out_in_pieces(self) -> None:
        buffer = LineBuffer()
        pieces = buffer.feed(b"x" * (MAX_LINE * 2 + 10))
        assert [len(p) for p in pieces] == [MAX_LINE, MAX_LINE]
        assert buffer.flush() == ["x" * 10]

    def test_bad_utf8_does_not_raise(self) -> None:
        assert LineBuffer().feed(b"\xff\xfe ok\n") == ["\ufffd\ufffd ok"]


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level, root.level = root.level, logging.DEBUG
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)
    root.level = old_level


def test_a_child_record_keeps_its_level_logger_and_task(captured: io.StringIO) -> None:
    formatter = _ChildRecordFormatter(lambda: ("t-1", "proj.add"))
    record = logging.LogRecord("proj", logging.ERROR, "", 0, "boom %s", ("now",), None)
    relay(formatter.format(record), Origin("child 2", 77))
    [entry] = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert entry["level"] == "ERROR" and entry["logger"] == "proj"
    assert (entry["message"], entry["process"], entry["pid"]) == ("boom now", "child 2", 77)
    assert (entry["task_id"], entry["task"]) == ("t-1", "proj.add")


def test_a_raw_line_is_output_at_warning(captured: io.StringIO) -> None:
    relay("printed by a task", Origin("child 0", 5, "t-2", "proj.x"))
    relay('{"forkq":1, not really json', Origin("child 0", 5))
    entries = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert [(e["logger"], e["level"]) for e in entries] == [("forkq.output", "WARNING")] * 2
    assert entries[0]["task_id"] == "t-2"


@pytest.mark.timeout(120)
def test_four_busy_children_never_interleave_lines(client: Forkq, start_worker: Any) -> None:
    worker = start_worker("-c", "4", "--prefetch", "1", "-l", "warning")
    wait_until_serving(client, worker)
    length, times = 20_000, 40  # five times PIPE_BUF: writes are split, lines must not be
    results = [client.send_task("e2eapp.shout", (c, length, times)) for c in "abcd"]
    assert [r.get(timeout=60) for r in results] == [times] * 4
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    payloads = [
        line.rsplit(": ", 1)[1] for line in worker.log().splitlines() if "forkq.output" in line
    ]
    assert all(p == p[0] * length for p in payloads)
    assert Counter(p[0] for p in payloads) == {c: times for c in "abcd"}


@pytest.mark.timeout(60)
def test_json_lines_to_a_logfile(client: Forkq, start_worker: Any, e2e_dir: Path) -> None:
    logfile = e2e_dir / "worker.jsonl"
    worker = start_worker("-c", "1", "-l", "info", "--log-json", "--logfile", str(logfile))
    wait_until_serving(client, worker)
    result = client.send_task("e2eapp.add", (1, 2))
    assert result.get(timeout=30) == 3
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert worker.log() == ""  # everything went to the file
    entries = [json.loads(line) for line in logfile.read_text().splitlines()]
    assert {"master", "child 0"} <= {e["process"] for e in entries}
    [done] = [e for e in entries if e.get("task_id") == result.id]
    assert done["task"] == "e2eapp.add" and "succeeded" in done["message"]
