"""`forkq inspect ping|stats|active|memory`: ask running workers on this host."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from forkq.cli.main import cli
from forkq.cli.memory_report import memory_summary, memory_table
from forkq.memory import ProcessMemory
from forkq.pool.control import ask, control_dir, socket_path

COMMANDS = ("ping", "stats", "active", "memory")


@cli.command()
@click.argument("command", type=click.Choice(COMMANDS))
@click.option("--pid", type=int, help="Only the worker whose master has this pid.")
@click.option(
    "--pidfile",
    type=click.Path(exists=True, dir_okay=False),
    help="Only the worker that wrote this pidfile.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the replies as JSON.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="Seconds to wait for each worker.",
)
def inspect(
    command: str, pid: int | None, pidfile: str | None, as_json: bool, timeout: float
) -> None:
    """Ask the workers running on this host (all of them, or the one named)."""
    if pidfile:
        pid = int(Path(pidfile).read_text().strip())
    replies = [ask(path, command, timeout) for path in _targets(pid)]
    if as_json:
        click.echo(json.dumps(replies, indent=2))
        return
    console = Console()
    for reply in replies:
        RENDER[command](reply, console)


def _targets(pid: int | None) -> list[Path]:
    if pid is not None:
        path = socket_path(pid)
        if not path.exists():
            raise click.UsageError(f"no worker with master pid {pid} here ({path} is missing)")
        return [path]
    paths = sorted(p for p in control_dir().glob("*.sock") if _alive(p))
    if not paths:
        raise click.UsageError(
            f"no running worker found in {control_dir()}; start one or give --pid"
        )
    return paths


def _alive(path: Path) -> bool:
    try:
        Path(f"/proc/{int(path.stem)}").stat()
    except (ValueError, FileNotFoundError):
        return False
    return True


def _ping(reply: dict[str, Any], console: Console) -> None:
    console.print(f"pong from {reply['title']} (master pid {reply['pid']})")


def _stats(reply: dict[str, Any], console: Console) -> None:
    console.print(
        f"[bold]{reply['title']}[/] master pid {reply['pid']}, up {reply['uptime']:.0f}s, "
        f"{reply['concurrency']} children wanted; done {reply['done']}, failed {reply['failed']}, "
        f"restarts {reply['restarts']}"
    )
    _children_table(reply["children"], console, "children")


def _active(reply: dict[str, Any], console: Console) -> None:
    if not reply["active"]:
        console.print(f"{reply['title']} (master pid {reply['pid']}): no task running")
        return
    _children_table(reply["active"], console, f"running in {reply['title']}")


def _children_table(children: list[dict[str, Any]], console: Console, title: str) -> None:
    table = Table(title=title)
    for name in (
        "child",
        "pid",
        "state",
        "task",
        "task id",
        "runtime",
        "done",
        "failed",
        "restarts",
    ):
        table.add_column(name, justify="right" if name in ("pid", "runtime", "done") else "left")
    for c in children:
        runtime = f"{c['runtime']:.2f}s" if c["runtime"] is not None else ""
        table.add_row(
            str(c["index"]),
            str(c["pid"]),
            c["state"],
            c["task"] or "",
            c["task_id"] or "",
            runtime,
            str(c["done"]),
            str(c["failed"]),
            str(c["restarts"]),
        )
    console.print(table)


def _memory(reply: dict[str, Any], console: Console) -> None:
    rows = [ProcessMemory(**p) for p in reply["processes"]]
    console.print(memory_table(rows, title=f"Memory of {reply['title']} (pid {reply['pid']})"))
    console.print(memory_summary(rows))


RENDER = {"ping": _ping, "stats": _stats, "active": _active, "memory": _memory}
