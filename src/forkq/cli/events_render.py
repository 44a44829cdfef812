"""How `forkq events` draws the state of the events (`forkq.events.state`): the workers, each
one's children as its latest heartbeat gave them and its master's memory, then the newest
task events. Every string from the store (names, reasons, queues, hosts) is shown as plain
text, never as Rich markup, its unprintable characters escaped: anyone who can write the store
writes them."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import datetime

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from forkq.engines.contract import EventPage
from forkq.events.state import EventsState, WorkerStatus, WorkerView
from forkq.events.values import ChildRow, TaskEvent
from forkq.pool.process_memory import format_bytes

_LONGEST = 80  # characters of a string from the store shown
_CHILD_COLUMNS = (
    "#",
    "pid",
    "state",
    "task",
    "for",
    "done",
    "restarts",
    "RSS",
    "PSS",
    "USS",
    "shared",
)
_STATUS_STYLE = {
    WorkerStatus.ONLINE: "green",
    WorkerStatus.OFFLINE: "dim",
    WorkerStatus.LOST: "bold red",
}


def show_once(pages: Iterator[EventPage], state: EventsState, where: str, tasks: int) -> None:
    """Every page folded, then the state drawn once."""
    for page in pages:
        state.fold_bodies(e.body for e in page.events)
    Console().print(render(state, time.time(), where, tasks))


def show_live(pages: Iterator[EventPage], state: EventsState, where: str, tasks: int) -> None:
    """Drawn again after each page (one every POLL_EVERY once caught up), until the pages
    end."""
    with Live(render(state, time.time(), where, tasks), auto_refresh=False) as live:
        for page in pages:
            state.fold_bodies(e.body for e in page.events)
            live.update(render(state, time.time(), where, tasks), refresh=True)


def render(state: EventsState, now: float, where: str, tasks: int) -> RenderableType:
    """The whole view at time `now`."""
    parts: list[RenderableType] = [_header(state, where), _workers(state, now)]
    for view in state.sorted_workers():
        if view.children and view.status(now) is not WorkerStatus.OFFLINE:
            parts.append(_children(view, now))
    parts.append(_tasks(list(state.tasks)[-tasks:]))
    return Group(*parts)


def safe(text: str) -> Text:
    """A string from the store as plain text: at most _LONGEST characters, control and other
    unprintable characters escaped (an ESC would reach the terminal)."""
    cut = text[:_LONGEST] + ("…" if len(text) > _LONGEST else "")
    return Text("".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in cut))


def _header(state: EventsState, where: str) -> Text:
    counts = ", ".join(
        f"{kind.value} {n}"
        for kind, n in sorted(state.task_counts.items(), key=lambda item: item[0].value)
    )
    line = Text("forkq events ", style="bold")
    line.append(f"from {where}")
    line.append(f"  tasks: {counts or 'none yet'}")
    if state.skipped:
        line.append(f"  skipped {state.skipped} body(ies) not events", style="yellow")
    return line


def _workers(state: EventsState, now: float) -> Table:
    table = Table(title="workers", title_justify="left", expand=False)
    for column in (
        "host",
        "worker",
        "state",
        "conc.",
        "queues",
        "heartbeat",
        "master RSS",
        "PSS",
        "USS",
    ):
        table.add_column(column)
    for view in state.sorted_workers():
        status = view.status(now)
        table.add_row(
            safe(view.host),
            safe(view.worker),
            Text(status.value, style=_STATUS_STYLE[status]),
            str(view.concurrency),
            safe(",".join(view.queues)),
            _ago(view.last_heartbeat, now),
            *_memory((view.master_rss, view.master_pss, view.master_uss), view),
        )
    if not state.workers:
        table.add_row(Text("no worker event yet (forkq worker -E sends them)", style="dim"))
    return table


def _children(view: WorkerView, now: float) -> Table:
    table = Table(title=safe(f"children of {view.host} ({view.worker})"), title_justify="left")
    for column in _CHILD_COLUMNS:
        table.add_column(column)
    for child in view.children:
        table.add_row(
            str(child.index),
            str(child.pid),
            safe(child.state),
            _child_task(child),
            running_for(child, now),
            str(child.tasks_done),
            str(child.restarts),
            *(format_bytes(n) for n in (child.rss, child.pss, child.uss, child.shared)),
        )
    return table


def _child_task(child: ChildRow) -> Text:
    if not child.task_id:
        return Text("")
    return safe(f"{child.task_name} {child.task_id[:8]}")


def running_for(child: ChildRow, now: float) -> str:
    """How long the child's current task has run at `now` ("" when it runs none)."""
    if not child.started_at:
        return ""
    return f"{max(0.0, now - child.started_at):.1f}s"


def _tasks(events: Iterable[TaskEvent]) -> Table:
    table = Table(title="task events, newest last", title_justify="left")
    for column in ("time", "event", "task", "id", "where", "runtime", "reason"):
        table.add_column(column)
    for event in events:
        where = f"{event.worker[:12]}/{event.child}" if event.worker else "client"
        table.add_row(
            datetime.fromtimestamp(event.at).strftime("%H:%M:%S.%f")[:-3],
            event.kind.value,
            safe(event.name),
            safe(event.task_id),
            safe(where),
            "" if event.runtime is None else f"{event.runtime:.3f}s",
            safe(event.reason),
        )
    return table


def _ago(at: float | None, now: float) -> str:
    return "never" if at is None else f"{max(0.0, now - at):.0f}s ago"


def _memory(figures: tuple[int, int, int], view: WorkerView) -> list[str]:
    if view.last_heartbeat is None:
        return ["", "", ""]
    return [format_bytes(n) for n in figures]
