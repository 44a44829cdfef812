"""`forkq control pool-grow N | pool-shrink N | add-queue Q | cancel-queue Q | shutdown |
rate-limit TASK RATE`: tell the workers of the app's broker, on every host (SQLite: of this
host), or those `--destination` names. Each worker's master does the work and says what it
did; a worker that does not answer within `--timeout` is named."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import click
from rich.console import Console

from forkq.cli.main import app_options, cli, resolve_app, say_where
from forkq.cli.reach import Render, reach_options, report
from forkq.cli.revoke import revoke_command
from forkq.exceptions import ConfigurationError, NoWorkerHere
from forkq.throttle import parse_rate


@cli.group()
def control() -> None:
    """Tell the workers what to do (their masters act; no running task is interrupted)."""


def _send(
    options: Mapping[str, Any], command: str, args: Mapping[str, Any], render: Render
) -> None:
    app = resolve_app(options["app_spec"], options["broker"], options["backend"])
    destination, timeout = options["destination"], options["timeout"]
    try:
        replies = app.control.broadcast(command, args, destination, timeout)
    except NoWorkerHere as exc:
        raise click.UsageError(str(exc)) from None
    finally:
        app.close()
    report(replies, options["as_json"], render, timeout)


def _pool(name: str, reply: dict[str, Any], console: Console) -> None:
    console.print(
        f"{name}: pool {reply['was']} -> {reply['concurrency']} children",
        highlight=False,
        markup=False,
    )


def _queues(name: str, reply: dict[str, Any], console: Console) -> None:
    changed = "now" if reply["changed"] else "unchanged"
    shown = f"{name}: queues {changed}: {', '.join(reply['queues'])}"
    console.print(shown, highlight=False, markup=False)


def _shutdown(name: str, reply: dict[str, Any], console: Console) -> None:
    console.print(f"{name}: shutdown: {reply['shutdown']}", highlight=False, markup=False)


def raw_reply(name: str, reply: dict[str, Any], console: Console) -> None:
    """A reply as JSON: for commands without a rendering of their own."""
    console.print(f"{name}: {json.dumps(reply)}", highlight=False, markup=False)


@control.command("pool-grow")
@app_options
@click.argument("n", type=click.IntRange(min=1))
@reach_options
def pool_grow(n: int, **options: Any) -> None:
    """N child processes more in each worker (as TTIN does one)."""
    _send(options, "pool-grow", {"n": n}, _pool)


@control.command("pool-shrink")
@app_options
@click.argument("n", type=click.IntRange(min=1))
@reach_options
def pool_shrink(n: int, **options: Any) -> None:
    """N child processes fewer in each worker, down to one (idle ones are retired)."""
    _send(options, "pool-shrink", {"n": n}, _pool)


@control.command("add-queue")
@app_options
@click.argument("queue")
@reach_options
def add_queue(queue: str, **options: Any) -> None:
    """Consume QUEUE too, from each child's next fetch."""
    _send(options, "add-queue", {"queue": queue}, _queues)


@control.command("cancel-queue")
@app_options
@click.argument("queue")
@reach_options
def cancel_queue(queue: str, **options: Any) -> None:
    """Stop consuming QUEUE, from each child's next fetch (its last queue stays)."""
    _send(options, "cancel-queue", {"queue": queue}, _queues)


@control.command()
@app_options
@reach_options
def shutdown(**options: Any) -> None:
    """Stop warm: running tasks finish (within the worker's --shutdown-timeout), then exit."""
    _send(options, "shutdown", {}, _shutdown)


@control.command("rate-limit")
@app_options
@click.argument("task")
@click.argument("rate")
def rate_limit(
    task: str, rate: str, app_spec: str | None, broker: str | None, backend: str | None
) -> None:
    """Make RATE (10/s, 100/m, 5/h; `none`: the task's own) the rate limit of TASK on every
    worker at once, from their next start of it. Kept in the result backend, which every
    worker reads: no worker needs to answer. Only tasks defined with a rate_limit have one."""
    limit = None if rate.lower() == "none" else rate
    try:
        shown = "its own" if limit is None else str(parse_rate(limit))
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="RATE") from None
    app = resolve_app(app_spec, broker, backend)
    say_where(app, "results")
    try:
        app.set_rate_limit(task, limit)
    finally:
        app.close()
    click.echo(f"rate limit of {task}: {shown}")


control.add_command(revoke_command)  # stores the ids first, then tells the workers (revocation.py)
