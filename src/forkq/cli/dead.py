"""`forkq dead list|requeue|purge`: the dead-letter place of every broker."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import click

from forkq.brokers import DeadLetter
from forkq.cli.main import app_options, cli, resolve_app


@cli.group()
def dead() -> None:
    """Inspect and recover dead-lettered messages."""


@dead.command("list")
@app_options
@click.option("-Q", "--queue", help="Only this queue.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--full", is_flag=True, help="Print each letter's body too.")
def list_(
    app_spec: str | None,
    broker: str | None,
    backend: str | None,
    queue: str | None,
    limit: int,
    as_json: bool,
    full: bool,
) -> None:
    """Show dead letters, oldest first: when, the task, the reason."""
    letters = resolve_app(app_spec, broker, backend).broker.dead_letters(queue, limit)
    if as_json:
        for letter in letters:
            click.echo(json.dumps(_as_dict(letter)))
        return
    if not letters:
        click.echo("no dead letters" + (f" in queue {queue!r}" if queue else ""))
        return
    now = time.time()
    rows = [_HEADER] + [_row(letter, now) for letter in letters]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER) - 1)]
    for i, row in enumerate(rows):
        click.echo("  ".join([c.ljust(w) for c, w in zip(row, widths, strict=False)] + [row[-1]]))
        if full and i:
            click.echo(f"    body: {letters[i - 1].body.decode(errors='replace')}")


_HEADER = ("RECEIPT", "QUEUE", "FAILED", "TASK", "ID", "REASON")


def _row(letter: DeadLetter, now: float) -> tuple[str, ...]:
    task, task_id = _task_of(letter.body)
    return (letter.receipt, letter.queue or "?", _when(letter.failed_at, now), task or "?",
            task_id or "?", letter.reason)  # fmt: skip


def _as_dict(letter: DeadLetter) -> dict[str, str]:
    task, task_id = _task_of(letter.body)
    return {
        "receipt": letter.receipt,
        "queue": letter.queue,
        "reason": letter.reason,
        "failed_at": _utc(letter.failed_at),
        "task": task,
        "id": task_id,
        "body": letter.body.decode(errors="replace"),
    }


def _task_of(body: bytes) -> tuple[str, str]:
    """The task name and id a letter's body names, read leniently: a letter may hold any bytes
    (that is often why it is a letter), and then both are empty."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        return "", ""
    if not isinstance(message, dict):
        return "", ""
    task, task_id = message.get("task"), message.get("id")
    return (task if isinstance(task, str) else ""), (task_id if isinstance(task_id, str) else "")


def _utc(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="seconds")


def _when(moment: float, now: float) -> str:
    """'3 min ago (2026-05-01 12:00:03 UTC)'; a time not known (stored as 0) says so."""
    if moment <= 0:
        return "unknown time"
    shown = datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{ago(now - moment)} ({shown})"


def ago(seconds: float) -> str:
    """How long ago, to the unit people read: '12 s ago', '3 min ago', '5 h ago', '2 days ago'."""
    if seconds < 1:
        return "just now"
    for unit, size in (("days", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {'day' if unit == 'days' and count == 1 else unit} ago"
    return f"{int(seconds)} s ago"


@dead.command()
@app_options
@click.argument("receipts", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Requeue every dead letter.")
def requeue(
    app_spec: str | None,
    broker: str | None,
    backend: str | None,
    receipts: tuple[str, ...],
    everything: bool,
) -> None:
    """Publish dead letters back to their queues: RECEIPTS from `dead list`, or --all."""
    if not receipts and not everything:
        raise click.UsageError("name receipts from 'forkq dead list', or pass --all")
    count = resolve_app(app_spec, broker, backend).broker.requeue_dead(
        None if everything else receipts
    )
    click.echo(f"requeued {count} message(s)")


@dead.command("purge")
@app_options
@click.option("-Q", "--queue", help="Only this queue.")
@click.option("--yes", is_flag=True, help="Confirm: this deletes dead letters.")
def purge_dead(
    app_spec: str | None, broker: str | None, backend: str | None, queue: str | None, yes: bool
) -> None:
    """Delete dead letters."""
    if not yes:
        raise click.UsageError("this deletes dead letters; add --yes to confirm")
    count = resolve_app(app_spec, broker, backend).broker.purge_dead(queue)
    click.echo(f"deleted {count} dead letter(s)")
