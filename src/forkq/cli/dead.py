"""`forkq dead list|requeue|purge`: the dead-letter place of every broker."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import click

from forkq.cli.main import app_options, cli, resolve_app
from forkq.engines.contract import DeadLetter
from forkq.envelope import Names


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
    app = resolve_app(app_spec, broker, backend)
    letters, codec = app.broker.dead_letters(queue, limit), app.codec
    if as_json:
        for letter in letters:
            click.echo(json.dumps(_as_dict(letter, codec.trusted_names(letter.body))))
        return
    if not letters:
        click.echo("no dead letters" + (f" in queue {queue!r}" if queue else ""))
        return
    now = time.time()
    rows = [_HEADER] + [_row(letter, codec.trusted_names(letter.body), now) for letter in letters]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER) - 1)]
    for i, row in enumerate(rows):
        click.echo("  ".join([c.ljust(w) for c, w in zip(row, widths, strict=False)] + [row[-1]]))
        if full and i:
            click.echo(f"    body: {letters[i - 1].body.decode(errors='replace')}")


_HEADER = ("RECEIPT", "QUEUE", "FAILED", "TASK", "ID", "REASON")


# A letter's task name and id are read by the app's codec (`Codec.trusted_names`): leniently,
# since a letter may hold any bytes (that is often why it is a letter), and only where the
# app's secret checks the signature. Either unknown is "?" in the table, "" in JSON.


def _row(letter: DeadLetter, names: Names, now: float) -> tuple[str, ...]:
    return (letter.receipt, letter.queue or "?", _when(letter.failed_at, now), names.task or "?",
            names.id or "?", letter.reason)  # fmt: skip


def _as_dict(letter: DeadLetter, names: Names) -> dict[str, str]:
    return {
        "receipt": letter.receipt,
        "queue": letter.queue,
        "reason": letter.reason,
        "failed_at": _utc(letter.failed_at),
        "task": names.task or "",
        "id": names.id or "",
        "body": letter.body.decode(errors="replace"),
    }


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
@click.argument("receipts", nargs=-1)
@click.option("-Q", "--queue", help="Only this queue.")
@click.option("--yes", is_flag=True, help="Confirm: this deletes dead letters.")
def purge_dead(
    app_spec: str | None,
    broker: str | None,
    backend: str | None,
    receipts: tuple[str, ...],
    queue: str | None,
    yes: bool,
) -> None:
    """Delete dead letters: RECEIPTS from `dead list`, or all (of one queue with -Q)."""
    if receipts and queue:
        raise click.UsageError("name receipts or a queue (-Q), not both")
    if not yes:
        raise click.UsageError("this deletes dead letters; add --yes to confirm")
    chosen = resolve_app(app_spec, broker, backend).broker
    count = chosen.delete_dead(receipts) if receipts else chosen.purge_dead(queue)
    click.echo(f"deleted {count} dead letter(s)")
