"""`forkq scheduler` (a periodic scheduler on its own) and `forkq periodic list`."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone

import click

from forkq.cli.dead import ago
from forkq.cli.main import app_options, cli, resolve_app
from forkq.engines.contract import FireRecord, schedule_store
from forkq.schedule import Schedule
from forkq.worker.scheduler import lease_name, queue_of, run_scheduler


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
    schedules = sorted(app.schedules.values(), key=lambda s: s.name)
    if not schedules:
        click.echo(f"app {app.main} has no periodic tasks")
        return
    store = schedule_store(app.broker, app.backend)
    records = store.records({s.name: queue_of(app, s) for s in schedules})
    leader = store.leader(lease_name(app))
    now = time.time()
    if as_json:
        for s in schedules:
            click.echo(json.dumps(_as_dict(s, records.get(s.name), now)))
        return
    lead = f"{leader.holder} (lease for {max(0, leader.until - now):.0f} s more)" if leader else (
        "none: no scheduler of this app runs (or its lease ran out)"
    )  # fmt: skip
    click.echo(f"leader: {lead}")
    header = ("SCHEDULE", "TASK", "WHEN", "CATCH-UP", "NEXT DUE", "LAST FIRE")
    rows = [header] + [_row(s, records.get(s.name), now) for s in schedules]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    for row in rows:
        click.echo("  ".join([c.ljust(w) for c, w in zip(row, widths, strict=False)] + [row[-1]]))


def _next_due(s: Schedule, record: FireRecord | None, now: float) -> int | None:
    """The next due time after now (or after the newest recorded, if that is later)."""
    return s.timing.after(max(int(now * 1000), record.due_ms if record else 0))


def _row(s: Schedule, record: FireRecord | None, now: float) -> tuple[str, ...]:
    due = _next_due(s, record, now)
    fired = record is not None and bool(record.task_id)
    last = _moment(record.due_ms / 1000, now) if record and fired else "never"
    return (s.name, s.task, str(s.timing), s.catch_up.value,
            "never" if due is None else _moment(due / 1000, now), last)  # fmt: skip


def _as_dict(s: Schedule, record: FireRecord | None, now: float) -> dict[str, object]:
    due = _next_due(s, record, now)
    fired = record is not None and bool(record.task_id)
    return {
        "name": s.name,
        "task": s.task,
        "when": str(s.timing),
        "catch_up": s.catch_up.value,
        "next_due": None if due is None else _utc(due / 1000),
        "last_due": _utc(record.due_ms / 1000) if record and fired else None,
        "last_fired_at": _utc(record.fired_at_ms / 1000) if record and fired else None,
        "last_task_id": record.task_id if record and fired else None,
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
