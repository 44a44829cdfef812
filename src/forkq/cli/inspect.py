"""`forkq inspect ping|stats|active|memory|reserved|registered|conf|scheduled|revoked`: ask
the workers of the app's broker, on every host (Redis, RabbitMQ), or of this host (SQLite, or
one master by `--pid`). A worker expected that does not answer within `--timeout` is named."""

from __future__ import annotations

from pathlib import Path

import click

from forkq.cli.inspect_render import RENDER
from forkq.cli.main import app_options, cli, resolve_app
from forkq.cli.reach import reach_options, report
from forkq.control_local import ask_local
from forkq.exceptions import NoWorkerHere

COMMANDS = tuple(RENDER)


@cli.command()
@app_options
@click.argument("command", type=click.Choice(COMMANDS))
@reach_options
@click.option("--pid", type=int, help="Only the worker of this host whose master has this pid.")
@click.option(
    "--pidfile",
    type=click.Path(exists=True, dir_okay=False),
    help="Only the worker of this host that wrote this pidfile.",
)
def inspect(
    app_spec: str | None,
    broker: str | None,
    backend: str | None,
    command: str,
    destination: tuple[str, ...] | None,
    timeout: float,
    as_json: bool,
    pid: int | None,
    pidfile: str | None,
) -> None:
    """Ask the workers what COMMAND says: every worker of the app's broker (-A, --broker),
    on every host, or those --destination names."""
    if pidfile:
        pid = int(Path(pidfile).read_text().strip())
    try:
        if pid is not None:
            replies = ask_local(command, None, destination, timeout, pid)
        else:
            app = resolve_app(app_spec, broker, backend)
            try:
                replies = app.control.inspect(command, destination, timeout)
            finally:
                app.close()
    except NoWorkerHere as exc:
        raise click.UsageError(str(exc)) from None
    report(replies, as_json, RENDER[command], timeout)
