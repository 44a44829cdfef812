"""Overview: workers online, tasks succeeded and failed over the last minutes, the queues."""

from __future__ import annotations

from typing import Any

from forkq.dashboard import charts
from forkq.dashboard.feed import Feed
from forkq.dashboard.views.common import Links, clock
from forkq.events.state import WorkerStatus
from forkq.events.tasks import TaskFilter
from forkq.events.values import TaskEventKind


def overview(feed: Feed, links: Links, now: float) -> dict[str, Any]:
    workers = feed.state.sorted_workers()
    online = [w for w in workers if w.status(now) is WorkerStatus.ONLINE]
    buckets = feed.outcomes.read(now)
    top = max([1, *buckets.succeeded, *buckets.failed])
    counts = feed.state.task_counts
    return {
        "trouble": feed.trouble,
        "workers_online": str(len(online)),
        "workers_known": str(len(workers)),
        "processes": str(sum(len(w.children) for w in online)),
        "succeeded": str(counts[TaskEventKind.SUCCEEDED]),
        "failed": str(counts[TaskEventKind.FAILED]),
        "tasks_known": str(len(feed.tasks)),
        "skipped": (
            f"{feed.state.skipped} stored bodies were not events of this version: skipped"
            if feed.state.skipped
            else ""
        ),
        "chart": {
            "succeeded": charts.polyline(buckets.succeeded, top),
            "failed": charts.polyline(buckets.failed, top),
            "top": f"{top} per {buckets.step:g}s",
            "span": f"last {len(buckets.succeeded) * buckets.step / 60:g} minutes",
        },
        "queues": [
            {
                "name": name,
                "url": links.queue(name),
                "messages": str(depth.messages),
                "delayed": "" if depth.delayed is None else str(depth.delayed),
            }
            for name, depth in sorted(feed.depths.items())
        ],
        "recent": [
            {
                "task_id": task.task_id,
                "url": links.task(task.task_id),
                "name": task.name,
                "state": task.state.value,
                "at": clock(task.last_at),
            }
            for task in feed.tasks.newest(_EVERY, 10)
        ],
    }


_EVERY = TaskFilter()
