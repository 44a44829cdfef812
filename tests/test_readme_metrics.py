"""The README's metrics table names exactly what a scrape serves: every family, with its
labels, and nothing more."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from forkq.engines.contract import QueueDepth
from forkq.envelope import make_message
from forkq.pool.exits import exit_causes
from forkq.pool.metrics import PoolMetrics
from forkq.pool.scoreboard import Scoreboard, SlotState
from forkq.states import SUCCESS
from forkq.worker.metrics import WorkerMetrics
from forkq.worker.task_counts import Outcome

README = Path(__file__).parent.parent / "README.md"


def documented() -> dict[str, set[str]]:
    """Each metric of the README's table, with its labels."""
    text = README.read_text()
    table = text[text.index("The metrics (counters end") :].split("\n\n")[1]
    found: dict[str, set[str]] = {}
    for row in table.splitlines()[2:]:
        names, labels = row.split("|")[1:3]
        first, *more = re.findall(r"`([a-z_]+)`", names)
        stem = first.rsplit("_", 2)[0]  # forkq_process_rss_bytes: the others are its siblings
        for name in [first, *(stem + suffix for suffix in more)]:
            found[name] = set(re.findall(r"`([a-z_]+)`", labels))
    return found


def served() -> dict[str, set[str]]:
    """Each family one scrape of a worker serves, as Prometheus names it, with its labels."""
    worker = WorkerMetrics(["t"], capacity=1)
    worker.observer(0).finished(make_message("t", [], {}, queue="q"), "q", SUCCESS, 0.1, "", 0.0)
    worker.depths = {"q": QueueDepth(messages=1, delayed=0)}
    pool = SimpleNamespace(
        hostname="h", concurrency=1, started_at=0.0, stopping=False,
        scoreboard=Scoreboard(1), companions=SimpleNamespace(all=[]),
        child_slots=lambda: [(0, os.getpid())],  # its counts are slot 0's
    )  # fmt: skip
    with socket.socket() as listener:
        text = PoolMetrics(listener, worker, worker.tally).metrics(pool).body.decode()  # type: ignore[arg-type]
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
        labels = {k for s in family.samples for k in s.labels} - {"le"}
        found[family.name + suffix] = labels
    return found


def test_the_readme_lists_every_metric_served_with_its_labels() -> None:
    assert documented() == served()


def _values(metric: str) -> set[str]:
    """The label values the README's row of `metric` names (in backticks)."""
    text = README.read_text()
    table = text[text.index("The metrics (counters end") :].split("\n\n")[1]
    [row] = [r for r in table.splitlines() if r.startswith(f"| `{metric}`")]
    return set(re.findall(r"`([a-z_]+)`", row.split("|")[3]))


def test_the_readme_names_every_value_of_the_enumerated_labels() -> None:
    assert {o.name.lower() for o in Outcome} <= _values("forkq_tasks_total")
    assert set(exit_causes()) <= _values("forkq_child_exits_total")
    states = {s.name.lower() for s in SlotState if s is not SlotState.EMPTY}
    assert states <= _values("forkq_children")
