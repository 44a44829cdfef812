"""The command line: one-line errors, and call/result/purge/dead against a real worker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from forkq import Forkq
from tests.conftest import results_url_for, wait_until_serving

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def broker_url(every_broker_url: str) -> str:
    """Tests that talk to a broker run on SQLite and on the real Redis."""
    return every_broker_url


def forkq(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forkq", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["worker", "-c", "0", "-A", "e2eapp"], "--concurrency"),
        (["worker"], "-A"),
        (["call"], "TASK"),
        (["call", "x", "--kwargs", "{nope"], "--kwargs"),
        (["call", "x", "--kwargs", "[1]"], "JSON object"),
        (["call", "x", "--priority", "12"], "--priority"),
        (["purge"], "--yes"),
        (["dead", "requeue"], "--all"),
        (["--broker", "ftp://nowhere", "call", "x"], "unsupported broker URL scheme"),
        (["--broker", "sqlite://host/x.db", "call", "x"], "sqlite"),
        (["-A", "e2eapp:nothing", "call", "x"], "not a Forkq app"),
        (["no-such-command"], "No such command"),
    ],
)
def test_bad_input_prints_one_line_saying_what_to_fix(
    e2e_dir: Path, args: list[str], hint: str
) -> None:
    done = forkq(e2e_dir, *args)
    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("forkq: error: ") and hint in lines[0]


def test_help_works_everywhere(e2e_dir: Path) -> None:
    for args in (
        [],
        ["--help"],
        ["worker", "--help"],
        ["call", "--help"],
        ["dead", "list", "--help"],
    ):
        done = forkq(e2e_dir, *args)
        assert done.returncode == 0 and "Usage:" in done.stdout, args


def test_every_command_is_listed_but_the_worker_loads_only_its_own(e2e_dir: Path) -> None:
    listing = forkq(e2e_dir, "--help").stdout
    for name in ("call", "dead", "demo", "inspect", "purge", "result", "worker"):
        assert f"  {name} " in listing, name
    # rich and the other commands' modules cost a worker tens of ms at start-up.
    code = (
        "import sys; from forkq.cli.main import main; sys.argv = ['forkq', 'worker', '--help']\n"
        "try: main()\n"
        "except SystemExit: pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('rich', 'forkq.cli.'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    loaded = done.stdout.strip().splitlines()[-1]
    assert loaded == str(
        ["forkq.cli.call_options", "forkq.cli.main", "forkq.cli.worker", "forkq.cli.worker_options"]
    )


@pytest.mark.slow
def test_call_result_purge_dead_round_trip(
    e2e_dir: Path, broker_url: str, client: Forkq, start_worker: Any
) -> None:
    base = ["-A", "e2eapp", "--broker", broker_url]
    if results := results_url_for(broker_url, e2e_dir):
        base += ["--backend", results]
    worker = start_worker("-c", "1", "-l", "warning")
    wait_until_serving(client, worker)

    waited = forkq(e2e_dir, *base, "call", "e2eapp.add", "2", "3", "--wait")
    assert (waited.returncode, waited.stdout.strip()) == (0, "5")

    queued = forkq(e2e_dir, *base, "call", "e2eapp.add", "--kwargs", '{"x": 1, "y": 4}')
    task_id = queued.stdout.strip()
    shown = forkq(e2e_dir, *base, "result", task_id, "--wait")
    assert (shown.returncode, shown.stdout.strip()) == (0, "5")
    state = json.loads(forkq(e2e_dir, *base, "result", task_id).stdout)
    assert state == {"id": task_id, "state": "SUCCESS", "result": 5}

    failed = forkq(e2e_dir, *base, "call", "e2eapp.add", "1", '"a"', "--wait")
    assert failed.returncode == 1
    assert "TypeError" in failed.stderr.splitlines()[-1]

    for _ in range(2):
        unknown = forkq(e2e_dir, *base, "call", "e2eapp.missing", "--wait")
        assert unknown.returncode == 1 and "unknown task" in unknown.stderr
    listed = forkq(e2e_dir, *base, "dead", "list", "--json")
    letter, other = [json.loads(line) for line in listed.stdout.splitlines()]
    assert "unknown task 'e2eapp.missing'" in letter["reason"]
    one = forkq(e2e_dir, *base, "dead", "purge", other["receipt"], "--yes")
    assert one.stdout.strip() == "deleted 1 dead letter(s)"
    assert (
        forkq(e2e_dir, *base, "dead", "purge", "--yes").stdout.strip() == "deleted 1 dead letter(s)"
    )

    worker.signal(15)
    assert worker.wait(timeout=30) == 0
    for _ in range(3):
        forkq(e2e_dir, *base, "call", "e2eapp.add", "1", "1")
    assert (
        forkq(e2e_dir, *base, "purge", "--yes").stdout.strip() == "purged 3 message(s) from default"
    )


def test_pending_result_of_unknown_id(e2e_dir: Path, sqlite_url: str) -> None:
    shown = forkq(e2e_dir, "--broker", sqlite_url, "result", "no-such-id")
    assert json.loads(shown.stdout) == {"id": "no-such-id", "state": "PENDING", "result": None}
    waited = forkq(
        e2e_dir, "--broker", sqlite_url, "result", "no-such-id", "--wait", "--timeout", "0.2"
    )
    assert waited.returncode == 1
    assert waited.stderr.strip().splitlines() == [
        f"forkq: results {sqlite_url}",
        "forkq: error: task no-such-id not ready after 0.2s",
    ]


def test_a_worker_command_that_fails_early_gives_the_collector_back() -> None:
    """The worker pauses the collector before it loads the app; a caller in the same process
    (a test, an embedding program) must not be left without it when the command fails."""
    import gc

    from click.testing import CliRunner

    from forkq.cli.main import cli

    assert gc.isenabled()
    result = CliRunner().invoke(cli, ["worker", "-A", "no_such_module_here"])
    assert result.exit_code != 0
    assert gc.isenabled()
