"""How `forkq inspect` shows one worker's reply to each command (`--json` shows them raw).

Every string of a reply (names, tasks, ids, queues, settings) is written by whoever can write
the broker: it is shown as plain text, never read as Rich markup (`plain`, `markup=False`)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from forkq.pool.process_memory import ProcessMemory
from forkq.process_memory_report import memory_summary, memory_table


def plain(value: object) -> str:
    """A value from a reply, escaped to stand for itself inside Rich markup."""
    return escape(str(value))


def _cell(value: object) -> Text:
    """A table cell: plain text (a `str` cell would be read as markup)."""
    return Text(str(value))


def _who(name: str, reply: dict[str, Any]) -> str:
    return f"{name} ({reply['title']}, master pid {reply['pid']})"


def ping(name: str, reply: dict[str, Any], console: Console) -> None:
    console.print(f"pong from {_who(name, reply)}", highlight=False, markup=False)


def stats(name: str, reply: dict[str, Any], console: Console) -> None:
    queues = ", ".join(reply.get("queues") or [])
    figures = (
        f"up {reply['uptime']:.0f}s, {reply['concurrency']} children wanted; queues {queues}; "
        f"done {reply['done']}, failed {reply['failed']}, restarts {reply['restarts']}"
    )
    console.print(f"[bold]{plain(_who(name, reply))}[/] {plain(figures)}", highlight=False)
    _children_table(reply["children"], console, f"children of {name}")


def active(name: str, reply: dict[str, Any], console: Console) -> None:
    if not reply["active"]:
        console.print(f"{_who(name, reply)}: no task running", highlight=False, markup=False)
        return
    _children_table(reply["active"], console, f"running in {name}")


def memory(name: str, reply: dict[str, Any], console: Console) -> None:
    rows = [ProcessMemory(**p) for p in reply["processes"]]
    console.print(memory_table(rows, title=f"Memory of {plain(_who(name, reply))}"))
    console.print(memory_summary(rows))


def reserved(name: str, reply: dict[str, Any], console: Console) -> None:
    held = [f"child {c['index']}: {c['reserved']}" for c in reply["children"] if c["reserved"]]
    console.print(
        f"{name}: {reply['reserved']} message(s) fetched, not started"
        + (f" ({', '.join(held)})" if held else ""),
        highlight=False,
        markup=False,
    )


def registered(name: str, reply: dict[str, Any], console: Console) -> None:
    tasks = reply["tasks"]
    console.print(f"[bold]{plain(name)}[/]: {len(tasks)} task(s)", highlight=False)
    for task, options in tasks.items():
        shown = ", ".join(f"{k}={v}" for k, v in options.items())
        line = f"  . {task}" + (f" [{shown}]" if shown else "")
        console.print(line, highlight=False, markup=False)


def conf(name: str, reply: dict[str, Any], console: Console) -> None:
    console.print(f"[bold]{plain(name)}[/]", highlight=False)
    for key, value in reply["settings"].items():
        console.print(f"  {key} = {value!r}", highlight=False, markup=False)


def scheduled(name: str, reply: dict[str, Any], console: Console) -> None:
    waiting = reply["scheduled"]
    if not waiting:
        console.print(f"{name}: no delayed message", highlight=False, markup=False)
        return
    table = Table(title=f"delayed messages of {plain(name)}'s queues")
    for column in ("due (UTC)", "queue", "task", "task id", "priority"):
        table.add_column(column)
    for entry in waiting:
        due = datetime.fromtimestamp(entry["due_at"], timezone.utc)
        what = entry.get("task") or f"({entry.get('error', '?')})"
        table.add_row(
            _cell(f"{due:%Y-%m-%d %H:%M:%S}"), _cell(entry["queue"]), _cell(what),
            _cell(entry.get("id") or ""), _cell(entry["priority"]),
        )  # fmt: skip
    console.print(table)


def revoked(name: str, reply: dict[str, Any], console: Console) -> None:
    ids = [entry["id"] for entry in reply.get("revoked") or ()]
    shown = f"{name}: {len(ids)} revoked id(s)" + "".join(f"\n  {i}" for i in ids)
    console.print(shown, highlight=False, markup=False)


def _children_table(children: list[dict[str, Any]], console: Console, title: str) -> None:
    table = Table(title=plain(title))
    columns = ("child", "pid", "state", "task", "task id", "runtime", "done", "failed", "restarts")
    for column in columns:
        table.add_column(
            column, justify="right" if column in ("pid", "runtime", "done") else "left"
        )
    for c in children:
        runtime = f"{c['runtime']:.2f}s" if c["runtime"] is not None else ""
        table.add_row(
            *(_cell(v) for v in (c["index"], c["pid"], c["state"], c["task"] or "",
              c["task_id"] or "", runtime, c["done"], c["failed"], c["restarts"])),
        )  # fmt: skip
    console.print(table)


RENDER = {
    "ping": ping,
    "stats": stats,
    "active": active,
    "memory": memory,
    "reserved": reserved,
    "registered": registered,
    "conf": conf,
    "scheduled": scheduled,
    "revoked": revoked,
}
