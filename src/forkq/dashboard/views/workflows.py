"""Workflows: the newest groups and chords the events tell of (events/groups.py), each with
its members' progress (succeeded, failed, running, waiting, out of its size where known),
and one group's page: each member and, for a chord, its body."""

from __future__ import annotations

from typing import Any

from forkq.dashboard import charts
from forkq.dashboard.feed import Feed
from forkq.dashboard.views.common import Links, clock
from forkq.events.groups import GroupView
from forkq.events.values import TaskEventKind

LISTED = 50  # groups a list shows
DONE = frozenset({TaskEventKind.SUCCEEDED})
BAD = frozenset({TaskEventKind.FAILED, TaskEventKind.REVOKED, TaskEventKind.REJECTED})
RUNNING = frozenset({TaskEventKind.STARTED})  # received, retried: waiting for a child


def workflow_list(feed: Feed, links: Links) -> dict[str, Any]:
    groups = feed.groups.newest(LISTED)
    return {
        "trouble": feed.trouble,
        "shown": f"{len(groups)} shown of {len(feed.groups)} known",
        "groups": [_summary(feed, group, links) for group in groups],
    }


def workflow_page(feed: Feed, links: Links, group_id: str) -> dict[str, Any]:
    group = feed.groups.get(group_id)
    if group is None:
        return {
            "trouble": feed.trouble,
            "found": "",
            "unknown": "No event tells of this group or chord (yet).",
            "members": [],
            "body": _task(feed, "", -1, links),
            **_summary(feed, None, links, group_id),
        }
    ordered = sorted(group.members.items(), key=lambda m: (m[1] < 0, m[1], m[0]))
    return {
        "trouble": feed.trouble,
        "found": "1",
        "unknown": "",
        "members": [_task(feed, task_id, index, links) for task_id, index in ordered],
        "body": _task(feed, group.body, -1, links),
        **_summary(feed, group, links),
    }


def _summary(
    feed: Feed, group: GroupView | None, links: Links, group_id: str = ""
) -> dict[str, Any]:
    states = [_state(feed, task_id) for task_id in (group.members if group else ())]
    size = max(group.size, group.seen) if group else 0
    counts = {
        "succeeded": sum(1 for s in states if s in DONE),
        "failed": sum(1 for s in states if s in BAD),
        "running": sum(1 for s in states if s in RUNNING),
    }
    waiting = max(0, size - sum(counts.values()))
    body = _state(feed, group.body) if group and group.body else None
    return {
        "group_id": group.group_id if group else group_id,
        "url": links.workflow(group.group_id if group else group_id),
        "kind": "chord" if group and group.is_chord else "group",
        "size": str(size) + ("" if not group or group.size else " seen"),
        **{name: str(count) for name, count in counts.items()},
        "waiting": str(waiting),
        "bar": _bar(counts, size),
        "body_state": body.value if body else "",
        "at": clock(group.last_at) if group else "",
    }


def _bar(counts: dict[str, int], size: int) -> dict[str, str]:
    """Each part's x and width in a stacked bar: succeeded, failed, then running."""
    bar, before = {}, 0
    for name, count in counts.items():
        bar[f"{name}_x"] = charts.percent(before, size)
        bar[f"{name}_width"] = charts.percent(count, size)
        before += count
    return bar


def _task(feed: Feed, task_id: str, index: int, links: Links) -> dict[str, str]:
    task = feed.tasks.get(task_id) if task_id else None
    return {
        "index": "" if index < 0 else str(index),
        "task_id": task_id,
        "url": links.task(task_id) if task_id else "",
        "name": task.name if task else "",
        "state": task.state.value if task else ("" if not task_id else "not seen"),
        "runtime": "" if task is None or task.runtime is None else f"{task.runtime:.3f}s",
    }


def _state(feed: Feed, task_id: str) -> TaskEventKind | None:
    task = feed.tasks.get(task_id)
    return task.state if task else None
