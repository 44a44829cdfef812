"""`forkq dead list|requeue|purge`: the dead-letter place of every broker."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import click

from forkq.cli.main import app_options, cli, resolve_app


@cli.group()
def dead() -> None:
    """Inspect and recover dead-lettered messages."""


@dead.command("list")
@app_options
@click.option("-Q", "--queue", help="Only this queue.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_(
    app_spec: str | None,
    broker: str | None,
    backend: str | None,
    queue: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show dead letters, oldest first, with the reason."""
    letters = resolve_app(app_spec, broker, backend).broker.dead_letters(queue, limit)
    for letter in letters:
        when = datetime.fromtimestamp(letter.failed_at, timezone.utc).isoformat(timespec="seconds")
        body = letter.body.decode(errors="replace")
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "receipt": letter.receipt,
                        "queue": letter.queue,
                        "reason": letter.reason,
                        "failed_at": when,
                        "body": body,
                    }
                )
            )
        else:
            click.echo(f"{letter.receipt}\t{letter.queue}\t{when}\t{letter.reason}\t{body[:120]}")
    if not letters and not as_json:
        click.echo("no dead letters")


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
