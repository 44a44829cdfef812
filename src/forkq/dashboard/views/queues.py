"""Queues: each queue's messages (due, delayed, by priority band where the broker counts
them, as its last read gave them), how fast messages come in and go out (from the events:
queue_rates.py says which), and the workers that consume it."""

from __future__ import annotations

from typing import Any

from forkq.dashboard import charts
from forkq.dashboard.feed import Feed
from forkq.engines.contract import PRIORITY_BANDS, QueueDepth
from forkq.events.queue_rates import QueueFlow, Way
from forkq.events.state import WorkerStatus

IN_FROM = {
    Way.SENT: "in: sent by clients (events_sent)",
    Way.RECEIVED: "in: received by workers (clients send no events)",
}
NO_BANDS = "this broker orders by priority inside the queue: no bands to count"


def queues(feed: Feed, now: float, only: str = "") -> dict[str, Any]:
    names = feed.queue_names()
    if only:
        names = [name for name in names if name == only]
    return {
        "trouble": feed.trouble,
        "count": str(len(names)),
        "queues": [_queue(feed, name, now) for name in names],
    }


def _queue(feed: Feed, name: str, now: float) -> dict[str, Any]:
    depth = feed.depths.get(name)
    flow = feed.rates.read(name, now)
    consumers = [
        w.host
        for w in feed.state.sorted_workers()
        if name in w.queues and w.status(now) is WorkerStatus.ONLINE
    ]
    return {
        "name": name,
        "messages": "" if depth is None else str(depth.messages),
        "delayed": _delayed(depth),
        "consumers": ", ".join(consumers) or "none online",
        "in_rate": f"{flow.in_per_second:.2f}/s",
        "out_rate": f"{flow.out_per_second:.2f}/s",
        "in_from": IN_FROM[flow.counted_in],
        "bands": _bands(depth),
        "bands_note": NO_BANDS if depth is not None and depth.bands is None else "",
        "chart": _chart(flow),
    }


def _delayed(depth: QueueDepth | None) -> str:
    if depth is None:
        return ""
    return "not counted by this broker" if depth.delayed is None else str(depth.delayed)


def _bands(depth: QueueDepth | None) -> list[dict[str, str]]:
    if depth is None or depth.bands is None:
        return []
    widest = max([1, *depth.bands])
    return [
        {"label": label, "count": str(count), "width": charts.percent(count, widest)}
        for label, count in reversed(list(zip(PRIORITY_BANDS, depth.bands, strict=True)))
    ]


def _chart(flow: QueueFlow) -> dict[str, str]:
    top = max([1, *flow.came_in, *flow.went_out])
    return {
        "came_in": charts.polyline(flow.came_in, top),
        "went_out": charts.polyline(flow.went_out, top),
        "top": f"{top} per {flow.step:g}s",
    }
