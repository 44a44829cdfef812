"""Schedules: the app's periodic tasks (the dashboard's -A app), each with its timing, when it
is next due and its last fire (linked to that task's page), and the scheduler that leads, as
the broker records them (`forkq periodic list` reads the same)."""

from __future__ import annotations

import time
from typing import Any

from forkq.dashboard.feed import Feed
from forkq.dashboard.views.common import Links, ago, clock
from forkq.worker.schedules_now import ScheduleNow


def schedules(feed: Feed, links: Links, now: float) -> dict[str, Any]:
    found = feed.schedules
    if not feed.app.schedules:
        absent = f"App {feed.app.main} has no periodic tasks (give the app with -A)."
    else:
        absent = ""
    leader = found.leader if found is not None else None
    return {
        "trouble": feed.trouble,
        "absent": absent,
        "reading": "Reading the schedules…" if found is None and not absent else "",
        "leader": (
            f"{leader.holder}, its lease for {max(0.0, leader.until - now):.0f}s more"
            if leader is not None
            else "none: no scheduler of this app runs (or its lease ran out)"
        ),
        "schedules": [_row(row, links, now) for row in (found.schedules if found else [])],
    }


def _row(row: ScheduleNow, links: Links, now: float) -> dict[str, str]:
    s = row.schedule
    return {
        "name": s.name,
        "task": s.task,
        "when": str(s.timing),
        "catch_up": s.catch_up.value,
        "next_due": "never" if row.next_due is None else _ahead(row.next_due, now),
        "last_due": "never" if row.last_due is None else f"{ago(row.last_due, now)}",
        "last_at": clock(row.last_fired_at),
        "last_task_id": row.last_task_id,
        "last_url": links.task(row.last_task_id) if row.last_task_id else "",
    }


def _ahead(moment: float, now: float) -> str:
    """'in 42s (12:00:00.000)' within the hour; beyond it, the date and time (local)."""
    seconds = moment - now
    if seconds < 1:
        return f"now ({clock(moment)})"
    if seconds < 3600:
        return f"in {seconds:.0f}s ({clock(moment)})"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(moment))
