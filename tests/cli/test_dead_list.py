"""`forkq dead list` as people read it: a header, when (how long ago, and the UTC time), the
task and its id read from the body, the reason; `--full` adds the body. Junk bodies list too."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import pytest
from click.testing import CliRunner

from forkq import Forkq
from forkq.cli.dead import ago
from forkq.cli.main import cli
from forkq.engines.contract import Consumer, outgoing


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.4, "just now"), (12.7, "12 s ago"), (185, "3 min ago"), (7300, "2 h ago"),
     (86_400, "1 day ago"), (3 * 86_400 + 5, "3 days ago")],
)  # fmt: skip
def test_ago_reads_as_people_say_it(seconds: float, shown: str) -> None:
    assert ago(seconds) == shown


class Letters(NamedTuple):
    url: str
    task_id: str
    earlier: float  # when the first letter failed


@pytest.fixture
def letters(tmp_path: Path) -> Letters:
    """Two dead letters in a SQLite broker: a task dead-lettered 3 minutes ago, and junk."""
    url = f"sqlite:///{tmp_path}/forkq.sqlite3"
    task_id = _dead_task(Forkq("proj", broker=url), b"\xff not json")
    earlier = time.time() - 185
    with sqlite3.connect(tmp_path / "forkq.sqlite3") as conn:
        conn.execute("UPDATE forkq_dead SET failed_at = ? WHERE id = 1", (earlier,))
    return Letters(url, task_id, earlier)


def _dead_task(app: Forkq, junk: bytes) -> str:
    """proj.tasks.add sent, then `junk`, both dead-lettered; the task's id."""
    worker = Consumer("w", "w/1")
    task_id = app.send_task("proj.tasks.add", (2, 3)).id
    app.broker.publish([outgoing("default", junk)])
    session = app.broker.consumer(worker, app.backend)
    for delivery in session.fetch(["default"], 2, 5.0):
        session.dead_letter(delivery, "unknown task" if delivery.receipt == "1" else "junk")
    app.close()
    return task_id


def _list(url: str, *options: str, env: dict[str, str] | None = None) -> list[str]:
    result = CliRunner().invoke(cli, ["--broker", url, "dead", "list", *options], env=env)
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_the_list_has_a_header_times_tasks_and_reasons(letters: Letters) -> None:
    url, task_id, earlier = letters
    header, first, junk = _list(url)
    assert header.split() == ["RECEIPT", "QUEUE", "FAILED", "TASK", "ID", "REASON"]
    utc = datetime.fromtimestamp(earlier, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    assert f"3 min ago ({utc} UTC)" in first
    assert "proj.tasks.add" in first and task_id in first and first.endswith("unknown task")
    assert "just now" in junk and junk.endswith("junk") and " ? " in junk
    assert header.index("REASON") == first.index("unknown task")  # columns line up


def test_full_prints_each_body(letters: Letters) -> None:
    url, task_id, _ = letters
    shown = _list(url, "--full")
    assert len(shown) == 5
    assert shown[2].startswith("    body: {") and f'"id":"{task_id}"' in shown[2]
    assert shown[4] == "    body: \ufffd not json"


def test_json_lines_name_the_task(letters: Letters) -> None:
    url, task_id, _ = letters
    first, junk = (json.loads(line) for line in _list(url, "--json"))
    assert (first["task"], first["id"], first["reason"]) == (
        "proj.tasks.add",
        task_id,
        "unknown task",
    )
    assert (junk["task"], junk["id"]) == ("", "")


def test_signed_letters_name_their_task_when_the_secret_checks(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/forkq.sqlite3"
    forged = b"fq1." + b"0" * 64 + b'.{"task":"proj.tasks.forged","id":"forged-id"}'
    task_id = _dead_task(Forkq("proj", broker=url, secret="s3cret"), forged)
    _, signed, unsigned = _list(url, env={"FORKQ_SECRET": "s3cret"})
    assert "proj.tasks.add" in signed and task_id in signed
    assert "forged" not in unsigned.replace("junk", "") and " ? " in unsigned
    assert json.loads(_list(url, "--json", env={"FORKQ_SECRET": "s3cret"})[0])["id"] == task_id
    _, unchecked, _ = _list(url, env={"FORKQ_SECRET": "another"})  # the wrong secret
    assert task_id not in unchecked and " ? " in unchecked


def test_an_empty_list_says_so(tmp_path: Path) -> None:
    assert _list(f"sqlite:///{tmp_path}/empty.sqlite3", "-Q", "q") == [
        "no dead letters in queue 'q'"
    ]
