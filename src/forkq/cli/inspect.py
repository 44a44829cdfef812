"""`forkq inspect ping|stats|active|memory`: ask running workers on this host."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from forkq.cli.main import cli
from forkq.exceptions import ForkqError
from forkq.pool.control import ask, socket_name
from forkq.pool.control_dir import (
    SUFFIX,
    ControlDir,
    ForeignSocket,
    open_inspect_dirs,
    worker_dir_path,
)
from forkq.pool.process_memory import ProcessMemory
from forkq.process_memory_report import memory_summary, memory_table

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
    dirs, skipped = open_inspect_dirs()
    try:
        for warning in skipped:
            _warn(warning)
        replies = _ask_all(dirs, pid, command, timeout)
    finally:
        for directory in dirs:
            directory.close()
    if as_json:
        click.echo(json.dumps(replies, indent=2))
        return
    console = Console()
    for reply in replies:
        RENDER[command](reply, console)


def _ask_all(
    dirs: list[ControlDir], pid: int | None, command: str, timeout: float
) -> list[dict[str, Any]]:
    where = " or ".join(str(d.path) for d in dirs) or str(worker_dir_path())
    if pid is not None:
        name = socket_name(pid)
        for directory in dirs:
            try:
                return [ask(directory, name, command, timeout)]
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                raise ForkqError(f"no answer from {directory.path / name}: {exc}") from None
        raise click.UsageError(f"no worker with master pid {pid} here (no {name} in {where})")
    replies = []
    for directory in dirs:
        for name in directory.names():
            if not _alive(name):
                continue
            try:
                replies.append(ask(directory, name, command, timeout))
            except ForeignSocket as exc:
                _warn(str(exc))
            except (OSError, ValueError) as exc:
                _warn(f"no answer from {directory.path / name}: {exc}")
    if not replies:
        raise click.UsageError(f"no running worker found in {where}; start one or give --pid")
    return replies


def _alive(name: str) -> bool:
    try:
        Path(f"/proc/{int(name.removesuffix(SUFFIX))}").stat()
    except (ValueError, FileNotFoundError):
        return False
    return True


def _warn(message: str) -> None:
    click.echo(f"forkq: warning: {message}", err=True)


def _name(reply: dict[str, Any]) -> str:
    """The worker's title, and its name (-n) when it has one."""
    named = reply.get("hostname")
    return f"{reply['title']} {named}" if named else str(reply["title"])


def _ping(reply: dict[str, Any], console: Console) -> None:
    console.print(f"pong from {_name(reply)} (master pid {reply['pid']})")


def _stats(reply: dict[str, Any], console: Console) -> None:
    console.print(
        f"[bold]{_name(reply)}[/] master pid {reply['pid']}, up {reply['uptime']:.0f}s, "
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
