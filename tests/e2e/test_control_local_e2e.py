"""Control on a broker that carries none (SQLite): `forkq inspect` and `forkq control` reach
the workers of this host through their masters' control sockets, by name as over a broker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from forkq import Forkq
from tests.commands import forkq
from tests.conftest import wait_until_serving

pytestmark = pytest.mark.timeout(120)


def test_control_through_the_local_sockets(
    client: Forkq, start_worker: Any, e2e_dir: Path, broker_url: str
) -> None:
    worker = start_worker(
        "-n", "w1", "-c", "1", env={"FORKQ_CONTROL_DIR": str(e2e_dir / "control")}
    )
    wait_until_serving(client, worker)
    assert "control:" not in worker.log() and worker.agent() is None  # no agent forked

    grown = forkq(e2e_dir, "control", "pool-grow", "1", "--broker", broker_url)
    assert grown.returncode == 0, grown.stderr
    assert grown.stdout.strip() == "w1: pool 1 -> 2 children"
    assert len(worker.all_children(2)) == 2
    stats = forkq(e2e_dir, "inspect", "stats", "--broker", broker_url, "-d", "w1", "--json")
    assert json.loads(stats.stdout)["replies"]["w1"]["concurrency"] == 2
    assert json.loads(stats.stdout)["route"] == "local"

    client.revoke(["a-revoked-id"])
    app_said = {  # answered by the master, with the agent's functions (agent_commands.py)
        command: json.loads(
            forkq(e2e_dir, "inspect", command, "--broker", broker_url, "--json").stdout
        )["replies"]["w1"]
        for command in ("registered", "conf", "scheduled", "revoked")
    }
    assert "e2eapp.add" in app_said["registered"]["tasks"]
    assert app_said["conf"]["settings"]["broker_url"] == broker_url
    assert "scheduled" in app_said["scheduled"] or "error" in app_said["scheduled"]
    assert [r["id"] for r in app_said["revoked"]["revoked"]] == ["a-revoked-id"]

    nobody = forkq(e2e_dir, "inspect", "ping", "--broker", broker_url, "-d", "w1,w9")
    assert nobody.returncode == 1
    assert "w9: missing: no reply within 5s" in nobody.stdout and "pong from w1" in nobody.stdout

    limited = forkq(e2e_dir, "control", "rate-limit", "e2eapp.add", "10/m", "--broker", broker_url)
    assert limited.returncode == 0, limited.stderr
    assert limited.stdout.strip() == "rate limit of e2eapp.add: 10/m"
    assert client.backend.rate_override("e2eapp.add") == 6.0
    forkq(e2e_dir, "control", "rate-limit", "e2eapp.add", "none", "--broker", broker_url)
    assert client.backend.rate_override("e2eapp.add") is None


def test_bad_control_arguments_say_what_to_fix_in_one_line(e2e_dir: Path) -> None:
    for args, hint in (
        (("control", "pool-grow", "0"), "0 is not in the range x>=1"),
        (("control", "pool-grow", "two"), "'two' is not a valid integer"),
        (("inspect", "ping", "--destination", " , "), "give worker names, comma-separated"),
        (("inspect", "pings"), "'pings' is not one of"),
        (("inspect", "ping", "--timeout", "0"), "0 is not in the range x>0"),
        (("control", "rate-limit", "e2eapp.add", "fast"), "N/s, N/m or N/h"),
    ):
        done = forkq(e2e_dir, *args)
        assert done.returncode == 2, (args, done.stderr)
        [line] = done.stderr.splitlines()
        assert line.startswith("forkq: error: ") and hint in line, (args, line)
