"""`forkq scheduler` (a periodic scheduler on its own) and `forkq periodic list`."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone

import click

from forkq.cli.dead import ago
from forkq.cli.main import app_options, cli, resolve_app
from forkq.worker.scheduler import run_scheduler
from forkq.worker.schedules_now import ScheduleNow, schedules_now


@cli.command()
@app_options
@click.option(
    "-l",
    "--loglevel",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error", "critical"], case_sensitive=False),
)
@click.option("--logfile", type=click.Path(dir_okay=False), help="Log here instead of stderr.")
@click.option("--log-json", is_flag=True, help="One JSON object per log line.")
def scheduler(
    app_spec: str | None,
    broker: str | None,
    backend: str | None,
    loglevel: str,
    logfile: str | None,
    log_json: bool,
) -> None:
    """Run a periodic scheduler on its own (every worker runs one too; one of all leads)."""
    if not (app_spec or click.get_current_context().find_root().params.get("app_spec")):
        raise click.UsageError("scheduler needs the app: -A module[:attribute]")
    app = resolve_app(app_spec, broker, backend)
    if not app.schedules:
        raise click.UsageError(f"app {app.main} has no periodic tasks: nothing to schedule")
    sys.exit(run_scheduler(app, loglevel, log_json, logfile))


@cli.group()
def periodic() -> None:
    """Periodic tasks: their schedules and fires."""


@periodic.command("list")
@app_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_(app_spec: str | None, broker: str | None, backend: str | None, as_json: bool) -> None:
    """Each schedule, its next due time and its last fire (as the broker records it)."""
    app = resolve_app(app_spec, broker, backend)
    if not app.schedules:
        click.echo(f"app {app.main} has no periodic tasks")
        return
    now = time.time()
    found = schedules_now(app, now)
    if as_json:
        for found_row in found.schedules:
            click.echo(json.dumps(_as_dict(found_row)))
        return
    leader = found.leader
    lead = f"{leader.holder} (lease for {max(0, leader.until - now):.0f} s more)" if leader else (
        "none: no scheduler of this app runs (or its lease ran out)"
    )  # fmt: skip
    click.echo(f"leader: {lead}")
    header = ("SCHEDULE", "TASK", "WHEN", "CATCH-UP", "NEXT DUE", "LAST FIRE")
    rows = [header] + [_row(each, now) for each in found.schedules]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    for row in rows:
        click.echo("  ".join([c.ljust(w) for c, w in zip(row, widths, strict=False)] + [row[-1]]))


def _row(row: ScheduleNow, now: float) -> tuple[str, ...]:
    s = row.schedule
    due = "never" if row.next_due is None else _moment(row.next_due, now)
    last = "never" if row.last_due is None else _moment(row.last_due, now)
    return (s.name, s.task, str(s.timing), s.catch_up.value, due, last)


def _as_dict(row: ScheduleNow) -> dict[str, object]:
    s = row.schedule
    return {
        "name": s.name,
        "task": s.task,
        "when": str(s.timing),
        "catch_up": s.catch_up.value,
        "next_due": None if row.next_due is None else _utc(row.next_due),
        "last_due": None if row.last_due is None else _utc(row.last_due),
        "last_fired_at": None if row.last_fired_at is None else _utc(row.last_fired_at),
        "last_task_id": row.last_task_id or None,
    }


def _moment(moment: float, now: float) -> str:
    """'in 12 s (2026-05-01 12:00:30 UTC)' or '3 min ago (2026-05-01 12:00:00 UTC)'."""
    shown = datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    if moment <= now:
        return f"{ago(now - moment)} ({shown})"
    ahead = "now" if moment - now < 1 else f"in {ago(moment - now).removesuffix(' ago')}"
    return f"{ahead} ({shown})"


def _utc(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="milliseconds")
