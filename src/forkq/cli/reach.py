"""What `forkq inspect` and `forkq control` share: which workers (`--destination`), how long
to wait (`--timeout`), and how replies are shown, missing workers included.

Names, errors and replies are shown as plain text, never read as Rich markup, and with their
unprintable characters escaped (`printable`, here once for every command): any writer of the
broker chooses them.

Exit status: 0 when every worker expected answered without an error; 1 when one is missing
or answered with an error (each is shown), or none answered at all.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click
import msgspec
from rich.console import Console
from rich.markup import escape

from forkq.control_replies import Replies, Route
from forkq.exceptions import ForkqError
from forkq.printable import printable, printable_values

F = TypeVar("F", bound=Callable[..., Any])
Render = Callable[[str, dict[str, Any], Console], None]


def destination(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> tuple[str, ...] | None:
    """`--destination w1@a,w2@b`: the workers named, or None for every one."""
    if value is None:
        return None
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    if not names:
        raise click.BadParameter("give worker names, comma-separated (e.g. w1@host1,w2@host2)")
    return names


def reach_options(fn: F) -> F:
    """--destination, --timeout and --json."""
    fn = click.option("--json", "as_json", is_flag=True, help="Print the replies as JSON.")(fn)
    fn = click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=5.0,
        show_default=True,
        help="Seconds to wait for the workers' replies.",
    )(fn)
    fn = click.option(
        "-d",
        "--destination",
        metavar="NAME[,NAME]",
        callback=destination,
        help="Only the workers of these names (-n); by default every worker of the broker "
        "(SQLite: of this host).",
    )(fn)
    return fn


def report(replies: Replies, as_json: bool, render: Render, timeout: float) -> None:
    """Print the replies, the errors and the missing workers; exit 1 unless all is well."""
    for warning in replies.warnings:
        click.echo(f"forkq: warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(msgspec.to_builtins(replies), indent=2))
    else:
        console = Console()
        for raw_name, raw_body in replies.replies.items():
            name, body = printable(raw_name), printable_values(raw_body)
            if "error" in body:
                console.print(
                    f"{escape(name)}: [bold red]error[/]: {escape(str(body['error']))}",
                    highlight=False,
                )
            else:
                _shown(render, name, body, console)
        for name in replies.missing:
            said, shown = escape(_silence(replies, name, timeout)), escape(printable(name))
            console.print(f"{shown}: [bold red]missing[/]: {said}", highlight=False)
    if not replies.replies and not replies.missing:
        where = "of this host" if replies.route is Route.LOCAL else "of this broker"
        raise ForkqError(f"no worker {where} answered within {timeout:g}s")
    if not replies.complete:
        sys.exit(1)


def _shown(render: Render, name: str, body: dict[str, Any], console: Console) -> None:
    """A reply as its command shows it; one not of the form the command gives (a worker of
    another version, or forged where there is no secret) as it came."""
    try:
        render(name, body, console)
    except (KeyError, TypeError, ValueError, AttributeError):
        shown = f"{name}: unexpected reply: {json.dumps(body)[:2000]}"
        console.print(shown, highlight=False, markup=False)


def _silence(replies: Replies, name: str, timeout: float) -> str:
    said = f"no reply within {timeout:g}s"
    seen = replies.last_seen.get(name)
    if seen is not None:
        said += f" (last announced {max(0.0, time.time() - seen):.0f}s ago)"
    return said
