"""`forkq dashboard`: the web dashboard (forkq.dashboard), served by uvicorn. Starlette,
uvicorn and Jinja2 come with the `dashboard` extra and are imported only here and in
forkq.dashboard, when this command runs."""

from __future__ import annotations

import socket
from types import FrameType

import click

from forkq.cli.main import app_options, cli, resolve_app
from forkq.engines.registry import open_backend
from forkq.exceptions import ConfigurationError


@cli.command()
@app_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=5555, show_default=True)
@click.option(
    "--auth",
    metavar="USER:PASSWORD",
    envvar="FORKQ_DASHBOARD_AUTH",
    help="HTTP basic authentication (or FORKQ_DASHBOARD_AUTH, kept out of `ps`).",
)
@click.option(
    "--token",
    metavar="TOKEN",
    envvar="FORKQ_DASHBOARD_TOKEN",
    help="A bearer token, or ?token= once per browser (or FORKQ_DASHBOARD_TOKEN).",
)
@click.option("--read-only", is_flag=True, help="No actions: buttons hidden, POSTs refused.")
@click.option("--hide-args", is_flag=True, help="Show neither task arguments nor results.")
@click.option(
    "--url-prefix",
    metavar="PATH",
    help="The path a reverse proxy serves the dashboard under, e.g. /forkq.",
)
@click.option(
    "--events-url",
    metavar="URL",
    help="Where the events are kept (overrides events_url; default: the result backend).",
)
def dashboard(
    app_spec: str | None,
    broker: str | None,
    backend: str | None,
    host: str,
    port: int,
    auth: str | None,
    token: str | None,
    read_only: bool,
    hide_args: bool,
    url_prefix: str | None,
    events_url: str | None,
) -> None:
    """Serve the web dashboard: workers, their memory, tasks; live."""
    from forkq.dashboard.config import DashboardConfig, normal_prefix, parse_credentials

    config = DashboardConfig(
        host=host,
        port=port,
        auth=parse_credentials(auth) if auth is not None else None,
        token=token,
        read_only=read_only,
        hide_args=hide_args,
        url_prefix=normal_prefix(url_prefix),
    )
    try:
        import uvicorn

        from forkq.dashboard.app import build
        from forkq.dashboard.feed import Feed
    except ImportError as exc:
        raise ConfigurationError(
            f"the dashboard needs its extra: pip install 'forkq[dashboard]' ({exc})"
        ) from None
    app = resolve_app(app_spec, broker, backend)
    if events_url:
        app.configure(events_url=events_url)
    _check_store(app.settings.events_store_url)
    listening = _listen(host, port)
    shown = f"http://{_shown_host(host)}:{port}{config.url_prefix}/"

    def ready(events: int) -> None:
        auth = "" if config.protected else " (no auth: open to anyone on this host)"
        click.echo(f"forkq dashboard on {shown}{auth}; {events} events read", err=True)

    feed = Feed(app, app.settings.events_store_url)
    asgi = build(config, feed, ready)
    settings = uvicorn.Config(asgi, log_level="warning", proxy_headers=False)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            feed.close_streams()  # open streams would hold the shutdown up
            super().handle_exit(sig, frame)

    Server(settings).run(sockets=[listening])


def _check_store(url: str) -> None:
    """The event store is one a result backend can be (not RabbitMQ): said at once, in one
    line, rather than on the page."""
    try:
        open_backend(url).close()
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"no event store: events are kept by a result backend (SQLite, Redis); set "
            f"events_url (FORKQ_EVENTS_URL, --events-url) or result_backend (--backend) ({exc})"
        ) from None


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the event history is read, so a port in use is
    one line at once and a client that connects while it is read waits in the backlog."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
    except OSError as exc:
        listening.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    listening.listen(128)
    return listening


def _shown_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
