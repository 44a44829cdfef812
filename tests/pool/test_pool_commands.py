"""The master's commands over its control socket (`pool/commands.py`): resizing, the queues
posted on the bulletin, bad arguments refused, a warm stop; a Master with a trivial program
and no broker."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from forkq.pool.bulletin import Bulletin
from forkq.pool.control import ask, socket_name
from forkq.pool.control_dir import ControlDir
from tests.pool.test_master import children_of, master_process, read_reports

pytestmark = pytest.mark.timeout(60)


def test_the_master_resizes_changes_queues_and_stops_when_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORKQ_CONTROL_DIR", str(tmp_path / "control"))  # before the fork
    with master_process(concurrency=1) as (pid, reports):
        seen = read_reports(reports, b"c", 1)  # its control socket is up before any child
        with ControlDir.open(tmp_path / "control", create=False) as directory:

            def told(command: str, **args: Any) -> dict[str, Any]:
                return ask(directory, socket_name(pid), command, 5.0, args)

            assert told("pool-grow", n=2) == {"concurrency": 3, "was": 1}
            seen += read_reports(reports, b"c", 3 - seen.count(b"c"))
            assert len(children_of(pid)) == 3 and told("stats")["concurrency"] == 3
            assert told("pool-shrink", n=5) == {"concurrency": 1, "was": 3}  # down to one
            seen += read_reports(reports, b"x", 2)  # two idle children retired
            assert told("reserved")["reserved"] == 0

            for bad in ("2", 0, True, None):
                assert told("pool-grow", n=bad) == {
                    "error": f"n must be a whole number from 1, not {bad!r}"
                }
            assert told("pool-grow") == {"concurrency": 2, "was": 1}  # n defaults to 1
            assert told("pool-shrink") == {"concurrency": 1, "was": 2}

            assert told("add-queue", queue="a") == {"queues": ["a"], "changed": True}
            assert told("add-queue", queue="b")["queues"] == ["a", "b"]
            assert told("add-queue", queue="a") == {"queues": ["a", "b"], "changed": False}
            assert told("cancel-queue", queue="a") == {"queues": ["b"], "changed": True}
            assert "the only queue" in told("cancel-queue", queue="b")["error"]
            assert "1 to 200 characters" in told("add-queue", queue="")["error"]
            assert "1 to 200 characters" in told("add-queue", queue=7)["error"]
            assert told("stats")["queues"] == ["b"]

            assert told("shutdown") == {"shutdown": "warm"}
        assert os.waitpid(pid, 0)[1] == 0


def test_children_read_the_queues_the_master_posts() -> None:
    bulletin = Bulletin(("default",))
    reader = bulletin.reader()
    version = reader.queues_version()
    bulletin.post_queues(("default", "extra"))
    assert reader.queues_version() == version + 1
    assert reader.read().queues == ("default", "extra")
    bulletin.close()
