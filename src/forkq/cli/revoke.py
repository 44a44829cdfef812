"""`forkq control revoke ID... [--terminate [--signal SIG]]`: revoke tasks
(forkq/revocation.py), registered on the `forkq control` group by cli/control.py."""

from __future__ import annotations

import click

from forkq.cli.main import app_options, resolve_app, say_where
from forkq.revocation import TELL_TIMEOUT


@click.command("revoke")
@app_options
@click.argument("task_ids", nargs=-1, required=True, metavar="ID...")
@click.option(
    "--terminate",
    is_flag=True,
    help="Also end a task that is running now: its child is sent --signal.",
)
@click.option(
    "--signal",
    "signal_name",
    metavar="SIG",
    help="With --terminate: the signal [default: SIGTERM, which interrupts the task and then "
    "ends its child; SIGKILL ends the child at once].",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=TELL_TIMEOUT,
    show_default=True,
    help="Seconds each running worker has to answer.",
)
def revoke_command(
    app_spec: str | None,
    broker: str | None,
    backend: str | None,
    task_ids: tuple[str, ...],
    terminate: bool,
    signal_name: str | None,
    timeout: float,
) -> None:
    """Revoke tasks by id: no worker runs them from now on, workers started later included
    (the ids are kept in the result backend); their state becomes REVOKED."""
    if signal_name is not None and not terminate:
        raise click.UsageError("--signal goes with --terminate")
    app = resolve_app(app_spec, broker, backend)
    try:
        told = app.revoke(
            task_ids, terminate=terminate, signal=signal_name or "SIGTERM", timeout=timeout
        )
        say_where(app, "results")
    finally:
        app.close()
    for why in told.silent:
        click.echo(f"forkq: warning: a worker was not told: {why}", err=True)
    click.echo(f"revoked {len(set(task_ids))} task(s); {len(told.replies)} running worker(s) told")
    for ended in told.terminated:
        click.echo(f"terminated {ended['task_id']}: {ended['signal']} to child pid {ended['pid']}")
