"""`forkq events`: the task and worker events the workers keep (`forkq worker -E`), read from
the store the app names (events_url, else its result backend): live in the terminal, or as
JSON, one event a line.

    --from start|now|OFFSET ─► read_events(after) every POLL_EVERY s ─┬─► --json: a line each
                               (at once again while pages come full)  └─► live: EventsState,
                                                                          drawn by events_render

Each JSON line carries the offset it was read at: a monitor that restarts gives the last one
it printed to --from and loses nothing still kept. A body that is not an event is skipped,
with a warning naming its offset (JSON) or counted (live). SIGINT, SIGTERM and a reader that
closes the pipe end it with status 0.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from types import FrameType

import click
import msgspec

from forkq.cli.main import app_options, cli, resolve_app
from forkq.engines.contract import EventPage, ResultBackend
from forkq.engines.registry import open_backend
from forkq.events import decode
from forkq.events.jsonable import event_json
from forkq.events.state import RECENT_TASKS, EventsState
from forkq.exceptions import BackendError, ConfigurationError
from forkq.settings import redacted

POLL_EVERY = 0.25  # seconds between reads once caught up
RETRY_EVERY = 2.0  # seconds between reads while the store is unreachable
PAGE = 1_000  # events read at once


class Stop(Exception):
    """SIGTERM: the loop ends as on Ctrl-C."""


class Position(msgspec.Struct):
    """Where reading goes on from: the offset of the last event read (None: the oldest kept)."""

    after: str | None


@cli.command()
@app_options
@click.option(
    "--events-url",
    metavar="URL",
    help="Where the events are kept (overrides events_url; default: the result backend).",
)
@click.option(
    "--from",
    "start",
    metavar="start|now|OFFSET",
    help="Read from the oldest kept (start), from what comes next (now), or after an offset "
    "a --json line gave [default: now live, start with --no-follow].",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event and line.")
@click.option("--no-follow", is_flag=True, help="Print what is kept after --from, then exit.")
@click.option(
    "--tasks",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="Live: how many of the newest task events to show.",
)
def events(
    app_spec: str | None,
    broker: str | None,
    backend: str | None,
    events_url: str | None,
    start: str | None,
    as_json: bool,
    no_follow: bool,
    tasks: int,
) -> None:
    """Show the workers, their children and the task events the workers keep (-E)."""
    app = resolve_app(app_spec, broker, backend)
    if events_url:
        app.configure(events_url=events_url)
    url = app.settings.events_store_url
    store = _open_store(url)
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        position = Position(_starting_offset(store, start, no_follow))
        pages = _pages(store, position, follow=not no_follow)
        if as_json:
            _print_json(pages)
        else:
            from forkq.cli.events_render import show_live, show_once

            state = EventsState(recent=max(tasks, RECENT_TASKS))
            if no_follow:
                show_once(pages, state, redacted(url), tasks)
            else:
                show_live(pages, state, redacted(url), tasks)
    except (KeyboardInterrupt, Stop):
        pass  # asked to stop: what was read is printed
    except BrokenPipeError:  # the reader went (`| head`): nothing more to print to
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        signal.signal(signal.SIGTERM, previous)
        store.close()
        app.close()


def _open_store(url: str) -> ResultBackend:
    try:
        return open_backend(url)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"no event store: events are kept by a result backend (SQLite, Redis); set "
            f"events_url (FORKQ_EVENTS_URL, --events-url) or result_backend (--backend) ({exc})"
        ) from None


def _starting_offset(store: ResultBackend, start: str | None, no_follow: bool) -> str | None:
    """The offset --from names, checked by the store: a malformed one is a usage error."""
    chosen = start or ("start" if no_follow else "now")
    if chosen == "start":
        return None
    if chosen == "now":
        return store.last_event_offset()
    try:
        store.read_events(chosen, 1)
    except ValueError as exc:
        raise click.BadParameter(f"{exc}; or give start or now", param_hint="'--from'") from None
    return chosen


def _pages(store: ResultBackend, position: Position, follow: bool) -> Iterator[EventPage]:
    """Pages read on from `position` (kept up to date): until caught up, or, following,
    for ever, pausing POLL_EVERY once caught up. While following, a store that is
    unreachable or fails is said on stderr and read again every RETRY_EVERY."""
    while True:
        try:
            page = store.read_events(position.after, PAGE)
        except BackendError as exc:  # unreachable, or a key another program broke
            if not follow:
                raise
            click.echo(f"forkq: warning: {exc}; reading again in {RETRY_EVERY:g}s", err=True)
            time.sleep(RETRY_EVERY)
            continue
        position.after = page.next or position.after
        yield page
        if len(page.events) < PAGE:
            if not follow:
                return
            time.sleep(POLL_EVERY)


def _stop(_signum: int, _frame: FrameType | None) -> None:
    raise Stop


def _print_json(pages: Iterator[EventPage]) -> None:
    for page in pages:
        for stored in page.events:
            event = decode(stored.body)
            if event is None:
                click.echo(
                    f"forkq: warning: skipped the body at offset {stored.offset}: "
                    "not an event of this version",
                    err=True,
                )
                continue
            sys.stdout.write(json.dumps(event_json(event, stored.offset)) + "\n")
        sys.stdout.flush()
