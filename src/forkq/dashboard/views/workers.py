"""Workers: each worker (by host, then id), its children's scoreboard rows as its latest
heartbeat gave them (how long each one's task has run, how many times its slot's child was
replaced), and the memory picture: each process's private pages (USS) against its
shared ones, the sum of RSS (what `ps` adds up) against the sum of PSS (what the pages cost,
each shared page divided among its sharers), and their difference, what fork saved."""

from __future__ import annotations

from typing import Any

from forkq.dashboard import charts
from forkq.dashboard.feed import Feed
from forkq.dashboard.views.common import Links, ago, human_bytes
from forkq.events.series import MemoryPoint
from forkq.events.state import WorkerView
from forkq.events.values import ChildRow


def workers(feed: Feed, links: Links, now: float) -> dict[str, Any]:
    views = feed.state.sorted_workers()
    return {
        "trouble": feed.trouble,
        "count": str(len(views)),
        "workers": [_worker(view, feed.memory.of(view.worker), links, now) for view in views],
    }


def _worker(
    view: WorkerView, history: list[MemoryPoint], links: Links, now: float
) -> dict[str, Any]:
    rss = view.master_rss + sum(c.rss for c in view.children)
    pss = view.master_pss + sum(c.pss for c in view.children)
    widest = max([1, view.master_rss, *(c.rss for c in view.children)])
    return {
        "id": view.worker,
        "host": view.host,
        "status": view.status(now).value,
        "pid": str(view.pid),
        "concurrency": str(view.concurrency),
        "queues": ", ".join(view.queues),
        "seen": ago(view.last_seen, now),
        "grow": links.worker_action(view.host, "grow"),
        "shrink": links.worker_action(view.host, "shrink"),
        "shutdown": links.worker_action(view.host, "shutdown"),
        "master": {
            "rss": human_bytes(view.master_rss),
            "uss": human_bytes(view.master_uss),
            "uss_width": charts.percent(view.master_uss, widest),
            "rss_width": charts.percent(view.master_rss, widest),
        },
        "children": [_child(row, links, widest, now) for row in view.children],
        "sum_rss": human_bytes(rss),
        "sum_pss": human_bytes(pss),
        "saved": human_bytes(max(0, rss - pss)),
        "pss_width": charts.percent(pss, rss),
        "history": _history(history),
    }


def running_for(started_at: float, now: float) -> str:
    """How long the current task has run at the page's `now` ("" when the child runs none):
    a heartbeat carries when it started, so every message of the stream says it anew."""
    if not started_at:
        return ""
    return f"running for {max(0.0, now - started_at):.1f}s"


def _history(points: list[MemoryPoint]) -> dict[str, str]:
    """The sums of RSS and of PSS over the last heartbeats: the gap is what fork saved."""
    top = max([1, *(p.rss for p in points)])
    return {
        "rss": charts.polyline([p.rss for p in points], top),
        "pss": charts.polyline([p.pss for p in points], top),
        "span": f"last {len(points)} heartbeats, top {human_bytes(top)}",
    }


def _child(row: ChildRow, links: Links, widest: int, now: float) -> dict[str, Any]:
    return {
        "index": str(row.index),
        "pid": str(row.pid),
        "state": row.state,
        "task_name": row.task_name,
        "task_url": links.task(row.task_id) if row.task_id else "",
        "running": running_for(row.started_at, now),
        "tasks_done": str(row.tasks_done),
        "restarts": str(row.restarts),
        "rss": human_bytes(row.rss),
        "uss": human_bytes(row.uss),
        "shared": human_bytes(row.shared),
        "uss_width": charts.percent(row.uss, widest),
        "rss_width": charts.percent(row.rss, widest),
    }
