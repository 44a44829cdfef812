"""Tasks: the newest tasks the events tell of, filtered by state, name, queue and worker, or
searched by id, newest first, a page at a time (older pages by a cursor in the query string,
which keeps the filters); and one task's page: what its events say, its timeline, and its result or
traceback from the result backend. With --hide-args neither arguments nor results are read."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import msgspec

from forkq.dashboard.feed import Feed
from forkq.dashboard.views.common import Links, clock, seconds
from forkq.engines.contract import StoredResult
from forkq.events.tasks import TaskFilter, TaskPage, TaskView
from forkq.events.values import TaskEventKind
from forkq.result import decode_record

LISTED = 100  # tasks a list shows
SHOWN_RESULT = 10_000  # characters of a result shown
STATES = [kind.value for kind in TaskEventKind]
CURSORS = ("before", "after")  # the query's page cursors: a task's place in the index


def task_filter(feed: Feed, query: dict[str, str]) -> TaskFilter:
    """The filter a query string names; an unknown state is no filter on the state; a worker
    is named by its host name (-n) or its id."""
    state = query.get("state", "")
    worker = query.get("worker", "").strip()
    ids = {w.worker for w in feed.state.workers.values() if w.host == worker}
    return TaskFilter(
        state=TaskEventKind(state) if state in STATES else None,
        name=query.get("name", "").strip(),
        queue=query.get("queue", "").strip(),
        workers=frozenset({worker, *ids} if worker else ()),
        search=query.get("search", "").strip(),
    )


def task_list(
    feed: Feed, links: Links, chosen: TaskFilter, query: dict[str, str]
) -> dict[str, Any]:
    """The page of tasks the query's cursor names (the newest without one); the stream
    repaints it within the same cursor, so an older page is not pushed on by new tasks."""
    cursor = {key: query[key].strip() for key in CURSORS if key in query}
    bad = [
        f"{key}={value!r}"
        for key, value in cursor.items()
        if not (value.isascii() and value.isdigit() and len(value) <= 18)
    ]
    numbers = {key: int(value) for key, value in cursor.items() if not bad}
    page = feed.tasks.page(chosen, LISTED, numbers.get("before"), numbers.get("after"))
    shown = f"{len(page.tasks)} shown of {len(feed.tasks)} known"
    if bad:
        shown += f" · not a page: {', '.join(bad)}; the newest shown"
    return {
        "trouble": feed.trouble,
        "shown": shown,
        "tasks": [_row(task, links, host_of(feed, task.worker)) for task in page.tasks],
        **_paging(page, links, {k: v for k, v in query.items() if k not in CURSORS}, cursor),
    }


def _paging(
    page: TaskPage, links: Links, filters: dict[str, str], cursor: dict[str, str]
) -> dict[str, str]:
    """Links to the pages next to this one, with the same filters; "" where none lies."""

    def url(**more: int) -> str:
        query = urlencode({**filters, **more})
        return links.page("/tasks") + (f"?{query}" if query else "")

    return {
        "newest_url": url() if cursor else "",
        "newer_url": url(after=page.newer) if page.newer is not None else "",
        "older_url": url(before=page.older) if page.older is not None else "",
    }


def host_of(feed: Feed, worker: str) -> str:
    """The worker's host name (-n), known from its events; else its id."""
    view = feed.state.workers.get(worker)
    return view.host if view is not None else worker


def _row(task: TaskView, links: Links, worker: str) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "url": links.task(task.task_id),
        "name": task.name,
        "state": task.state.value,
        "queue": task.queue,
        "worker": worker,
        "at": clock(task.last_at),
        "runtime": seconds(task.runtime),
    }


def task_page(
    feed: Feed, task_id: str, stored: StoredResult | None, hide_args: bool
) -> dict[str, Any]:
    task = feed.tasks.get(task_id)
    found = task is not None or stored is not None
    return {
        "task_id": task_id,
        "found": found,
        "unknown": "" if found else "No event and no result tell of this task (yet).",
        "name": task.name if task else "",
        "state": task.state.value if task else "",
        "queue": task.queue if task else "",
        "worker": host_of(feed, task.worker) if task else "",
        "child": str(task.child) if task and task.child >= 0 else "",
        "runtime": seconds(task.runtime) if task else "",
        "reason": task.reason if task else "",
        "args": "(hidden)" if hide_args else (task.args if task else ""),
        "timeline": [
            {
                "at": clock(e.at),
                "kind": e.kind.value,
                "where": f"{host_of(feed, e.worker)} #{e.child}" if e.worker else "client",
                "reason": e.reason,
            }
            for e in (task.timeline if task else [])
        ],
        **_stored(stored, hide_args),
    }


def _stored(stored: StoredResult | None, hide_args: bool) -> dict[str, str]:
    if stored is None:
        return {"stored_state": "", "result": "", "traceback": ""}
    try:
        record = decode_record(stored.payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return {"stored_state": stored.state, "result": "(not a result record)", "traceback": ""}
    if hide_args:
        result = "(hidden)"
    elif record.exc_type:
        result = f"{record.exc_type}: {record.exc_message or ''}"
    else:
        result = json.dumps(record.result, default=repr)[:SHOWN_RESULT]
    return {
        "stored_state": record.state,
        "result": result,
        "traceback": "" if hide_args else (record.traceback or ""),
    }
