"""`forkq` command line. Every bad argument ends in one line: `forkq: error: <what to fix>`."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click

from forkq import exitcodes
from forkq.app import Forkq
from forkq.cli import call_options
from forkq.engines.sqlite.file import shown_url
from forkq.exceptions import ConfigurationError, ForkqError, ResultTimeout, TaskFailed
from forkq.worker.loader import AppLoadError, load_app

F = TypeVar("F", bound=Callable[..., Any])


def app_options(fn: F) -> F:
    """-A/--broker/--backend, accepted before or after the command name."""
    fn = click.option("-A", "--app", "app_spec", help="The app: module[:attribute].")(fn)
    fn = click.option("--broker", help="Broker URL (overrides the app and FORKQ_BROKER_URL).")(fn)
    fn = click.option("--backend", help="Result backend URL (default: the broker's).")(fn)
    return fn


def resolve_app(app_spec: str | None, broker: str | None, backend: str | None) -> Forkq:
    parent = click.get_current_context().find_root().params
    app_spec = app_spec or parent.get("app_spec")
    broker = broker or parent.get("broker")
    backend = backend or parent.get("backend")
    app = load_app(app_spec) if app_spec else Forkq("forkq")
    app.configure(broker_url=broker, result_backend=backend)
    return app


# Commands with a module of their own, imported only when named or listed (--help): a worker
# then starts without loading rich (inspect, demo) or the dead-letter tools.
LAZY_COMMANDS = {
    "control": "forkq.cli.control",
    "dashboard": "forkq.cli.dashboard",
    "dead": "forkq.cli.dead",
    "events": "forkq.cli.events",
    "demo": "forkq.cli.demo",
    "inspect": "forkq.cli.inspect",
    "periodic": "forkq.cli.periodic",
    "scheduler": "forkq.cli.periodic",
    "worker": "forkq.cli.worker",
}


class OneLineErrors(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            importlib.import_module(LAZY_COMMANDS[cmd_name])  # its decorator registers it here
        return super().get_command(ctx, cmd_name)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
            sys.exit(0)
        except click.UsageError as exc:
            fail(_usage_message(exc), exitcodes.USAGE)
        except click.Abort:
            fail("aborted", 1)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except ConfigurationError as exc:
            fail(str(exc), exitcodes.USAGE)
        except AppLoadError as exc:
            fail(str(exc), exitcodes.APP_LOAD_FAILED)
        except ForkqError as exc:
            fail(str(exc), 1)


def _usage_message(exc: click.UsageError) -> str:
    command = exc.ctx.command_path if exc.ctx else "forkq"
    return f"{exc.format_message()} (see '{command} --help')"


def fail(message: str, code: int) -> None:
    click.echo(f"forkq: error: {message}", err=True)
    sys.exit(code)


@click.group(cls=OneLineErrors, no_args_is_help=True)
@app_options
@click.version_option(package_name="forkq")
def cli(app_spec: str | None, broker: str | None, backend: str | None) -> None:
    """forkq: a distributed task queue whose worker is a prefork pool done right."""


@cli.command()
@app_options
@click.argument("task")
@click.argument("args", nargs=-1)
@click.option(
    "--args",
    "args_json",
    metavar="JSON",
    callback=call_options.json_array,
    help="Positional arguments as a JSON array (instead of ARGS).",
)
@click.option(
    "--kwargs",
    metavar="JSON",
    default="{}",
    callback=call_options.json_object,
    help="Keyword arguments as a JSON object.",
)
@click.option("--countdown", type=click.FloatRange(min=0), help="Run no sooner than in S seconds.")
@click.option(
    "--eta",
    metavar="TIME",
    callback=call_options.moment,
    help="Run no sooner than TIME, ISO 8601 with its UTC offset (2026-05-01T08:00:00Z).",
)
@click.option(
    "--expires",
    metavar="S|TIME",
    callback=call_options.moment_or_seconds,
    help="Do not run it after S seconds from now, or after TIME (ISO 8601).",
)
@click.option("-Q", "--queue", help="Queue [default: the app's].")
@click.option("--priority", type=click.IntRange(0, 9), default=0, show_default=True)
@click.option("--wait", is_flag=True, help="Wait for the result and print it.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="With --wait: give up after this many seconds.",
)
def call(
    app_spec: str | None,
    broker: str | None,
    backend: str | None,
    task: str,
    args: tuple[str, ...],
    args_json: list[Any] | None,
    kwargs: dict[str, Any],
    countdown: float | None,
    eta: datetime | None,
    expires: datetime | float | None,
    queue: str | None,
    priority: int,
    wait: bool,
    timeout: float,
) -> None:
    """Enqueue TASK by name. Each ARG is read as JSON when it parses, else as a string."""
    if args and args_json is not None:
        raise click.UsageError("give the arguments as ARGS or as --args JSON, not both")
    if countdown is not None and eta is not None:
        raise click.UsageError("give --countdown or --eta, not both")
    app = resolve_app(app_spec, broker, backend)
    say_where(app, "broker", *(("results",) if wait else ()))
    result = app.send_task(
        task,
        [_json_or_text(a) for a in args] if args_json is None else args_json,
        kwargs,
        countdown=countdown,
        eta=eta,
        expires=expires,
        queue=queue,
        priority=priority,
    )
    if not wait:
        click.echo(result.id)
        return
    _print_result(result.get, timeout)


@cli.command()
@app_options
@click.argument("task_id")
@click.option("--wait", is_flag=True, help="Wait until the task is done.")
@click.option("--timeout", type=click.FloatRange(min=0), default=60.0, show_default=True)
def result(
    app_spec: str | None,
    broker: str | None,
    backend: str | None,
    task_id: str,
    wait: bool,
    timeout: float,
) -> None:
    """Print a task's state and result (JSON); a failure's traceback also goes to stderr."""
    app = resolve_app(app_spec, broker, backend)
    say_where(app, "results")
    handle = app.AsyncResult(task_id)
    if wait:
        _print_result(handle.get, timeout)
        return
    state = handle.state
    value = handle.result
    shown = value
    if isinstance(value, TaskFailed):
        shown = {
            "type": value.exc_type,
            "message": value.exc_message,
            "traceback": value.remote_traceback,
        }
        click.echo(value.remote_traceback.rstrip() or str(value), err=True)
    click.echo(json.dumps({"id": task_id, "state": state, "result": shown}))


def say_where(app: Forkq, *roles: str) -> None:
    """On stderr, the SQLite file a command uses, resolved: a relative path (the default
    ./forkq.sqlite3 is one) names another file in another directory."""
    urls = {"broker": app.settings.broker_url, "results": app.settings.backend_url}
    shown = {urls[role] for role in roles if urls[role].startswith("sqlite:")}
    for role in roles:
        if urls[role] in shown:
            shown.discard(urls[role])
            click.echo(f"forkq: {role} {shown_url(urls[role])}", err=True)


@cli.command()
@app_options
@click.option("-Q", "--queue", help="Queue [default: the app's].")
@click.option("--yes", is_flag=True, help="Confirm: this deletes messages.")
def purge(
    app_spec: str | None, broker: str | None, backend: str | None, queue: str | None, yes: bool
) -> None:
    """Delete every waiting message of a queue (held messages are left alone)."""
    if not yes:
        raise click.UsageError("purge deletes messages; add --yes to confirm")
    app = resolve_app(app_spec, broker, backend)
    name = queue or app.settings.default_queue
    click.echo(f"purged {app.broker.purge(name)} message(s) from {name}")


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _print_result(get: Callable[..., Any], timeout: float) -> None:
    try:
        value = get(timeout=timeout)
    except TaskFailed as exc:
        click.echo(exc.remote_traceback.rstrip() or str(exc), err=True)
        fail(str(exc), 1)
    except ResultTimeout as exc:
        fail(str(exc), 1)
    click.echo(json.dumps(value))


def main() -> None:
    cli(prog_name="forkq")
