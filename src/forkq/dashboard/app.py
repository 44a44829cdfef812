"""The dashboard's ASGI app: its routes, what wraps them (the prefix, then security, in front
of everything including the stream and static files), and its lifespan (the feed started
before the first request is served: the history is read by then)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from forkq.dashboard.actions import Actions, forget_said, said
from forkq.dashboard.config import DashboardConfig
from forkq.dashboard.feed import Feed, now
from forkq.dashboard.paths import PrefixMiddleware
from forkq.dashboard.security import SecurityMiddleware
from forkq.dashboard.views.common import Links
from forkq.dashboard.views.dead import dead_letters
from forkq.dashboard.views.overview import overview
from forkq.dashboard.views.queues import queues
from forkq.dashboard.views.schedules import schedules
from forkq.dashboard.views.tasks import STATES, task_filter, task_list, task_page
from forkq.dashboard.views.workers import workers
from forkq.dashboard.views.workflows import workflow_list, workflow_page
from forkq.exceptions import ForkqError

HERE = Path(__file__).parent
KEEPALIVE = 15.0  # seconds between a stream's messages when nothing changes
STREAM_GAP = 0.5  # seconds at least between two messages of one stream
CLOCK_EVERY = 1.0  # seconds between reads of a page whose data moves with the clock
# Pages whose data changes with the clock alone: a busy child's "running for", "seen 3s
# ago", a schedule's "in 42s", a letter's "3s ago", a queue's rate over the last minute.
CLOCKED = {"workers", "schedules", "dead", "queues"}
PageData = Callable[[Request], Awaitable[dict[str, Any]]]


class Dashboard:
    """The pages: each a template and a data function the stream shares."""

    def __init__(self, config: DashboardConfig, feed: Feed) -> None:
        self.config, self.feed = config, feed
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.globals["blank"] = Blank()
        self.pages: dict[str, tuple[str, PageData]] = {
            "overview": ("overview.html", self._overview),
            "workers": ("workers.html", self._workers),
            "tasks": ("tasks.html", self._tasks),
            "task": ("task.html", self._task),
            "queues": ("queues.html", self._queues),
            "dead": ("dead.html", self._dead),
            "schedules": ("schedules.html", self._schedules),
            "workflows": ("workflows.html", self._workflows),
            "workflow": ("workflow.html", self._workflow),
        }

    async def _overview(self, request: Request) -> dict[str, Any]:
        return overview(self.feed, _links(request), now())

    async def _workers(self, request: Request) -> dict[str, Any]:
        return workers(self.feed, _links(request), now())

    async def _queues(self, request: Request) -> dict[str, Any]:
        chosen = request.query_params.get("queue", "")
        if chosen:
            self.feed.ask(chosen)
        return queues(self.feed, now(), chosen)

    async def _dead(self, request: Request) -> dict[str, Any]:
        chosen = request.query_params.get("queue", "")
        self.feed.ask_dead(chosen)
        return dead_letters(self.feed, _links(request), now(), chosen)

    async def _schedules(self, request: Request) -> dict[str, Any]:
        if self.feed.app.schedules:
            self.feed.ask_schedules()
        return schedules(self.feed, _links(request), now())

    async def _workflows(self, request: Request) -> dict[str, Any]:
        return workflow_list(self.feed, _links(request))

    async def _workflow(self, request: Request) -> dict[str, Any]:
        group_id = request.path_params.get("group_id") or request.query_params.get("id", "")
        return workflow_page(self.feed, _links(request), group_id)

    async def _tasks(self, request: Request) -> dict[str, Any]:
        query = dict(request.query_params)
        return task_list(self.feed, _links(request), task_filter(self.feed, query), query)

    async def _task(self, request: Request) -> dict[str, Any]:
        task_id = request.path_params.get("task_id") or request.query_params.get("id", "")
        trouble, stored = self.feed.trouble, None
        try:
            stored = await self.feed.call(self.feed.stored, task_id) if task_id else None
        except ForkqError as exc:
            trouble = f"the result backend cannot be read: {exc}"
        return {"trouble": trouble, **task_page(self.feed, task_id, stored, self.config.hide_args)}

    def page(self, name: str) -> Callable[[Request], Awaitable[Response]]:
        template, data = self.pages[name]

        async def render(request: Request) -> Response:
            values = await data(request)
            links = _links(request)
            html = self.templates.get_template(template).render(
                page=name,
                data=values,
                links=links,
                stream=_stream_url(request, name, links),
                csrf=request.scope["state"]["csrf"],
                read_only=self.config.read_only,
                open_to_host=not self.config.protected,
                hide_args=self.config.hide_args,
                said=said(request),
                query=dict(request.query_params),
                states=STATES,
            )
            response = HTMLResponse(html, headers={"cache-control": "no-store"})
            forget_said(request, response)
            return response

        return render

    async def stream(self, request: Request) -> Response:
        name = request.path_params["page"]
        if name not in self.pages:
            return PlainTextResponse(f"no such page: {name}", 404)
        _, data = self.pages[name]
        every = CLOCK_EVERY if name in CLOCKED else KEEPALIVE
        return StreamingResponse(
            self._messages(request, data, every),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def _messages(self, request: Request, data: PageData, every: float) -> AsyncIterator[str]:
        """The page's data now, then again when it differs from what was sent last, at
        most once every STREAM_GAP seconds; read again on every change of the feed and
        every `every` seconds (a page whose data moves with the clock); a comment after
        KEEPALIVE seconds without a message, so proxies keep the connection."""
        version, sent, last = self.feed.version, "", time.monotonic()
        while not self.feed.closing:
            message = json.dumps(await data(request))
            if message != sent:
                yield f"data: {message}\n\n"
                sent, last = message, time.monotonic()
                await asyncio.sleep(STREAM_GAP)
            elif time.monotonic() - last >= KEEPALIVE:
                yield ": nothing new\n\n"
                last = time.monotonic()
            version = await self.feed.changed_since(version, every)


class Blank:
    """What a list's <template> row is painted with: every field empty."""

    def __getattr__(self, name: str) -> Blank:
        if name.startswith("_"):  # __html__ and the like: a blank is plain text
            raise AttributeError(name)
        return self

    def __str__(self) -> str:
        return ""

    def __bool__(self) -> bool:
        return False

    def __iter__(self) -> Iterator[Any]:
        return iter(())


def build(
    config: DashboardConfig, feed: Feed, ready: Callable[[int], None] | None = None
) -> Starlette:
    """The ASGI app over `feed`; `ready(events read)` is called once the history is read."""
    dashboard = Dashboard(config, feed)
    actions = Actions(feed, config)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await feed.start()
        if ready is not None:
            ready(feed.read)
        try:
            yield
        finally:
            await feed.stop()

    routes = [
        Route("/", dashboard.page("overview")),
        Route("/workers", dashboard.page("workers")),
        Route("/tasks", dashboard.page("tasks")),
        Route("/queues", dashboard.page("queues")),
        Route("/dead", dashboard.page("dead")),
        Route("/schedules", dashboard.page("schedules")),
        Route("/workflows", dashboard.page("workflows")),
        Route("/workflows/{group_id:path}", dashboard.page("workflow")),
        Route("/dead/{verb}", actions.dead, methods=["POST"]),
        Route("/tasks/{task_id:path}/revoke", actions.revoke, methods=["POST"]),
        Route("/tasks/{task_id:path}", dashboard.page("task")),
        Route("/workers/{host}/{verb}", actions.worker, methods=["POST"]),
        Route("/stream/{page}", dashboard.stream),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [
        Middleware(PrefixMiddleware, prefix=config.url_prefix),
        Middleware(SecurityMiddleware, config=config),
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def _links(request: Request) -> Links:
    return Links(request.scope.get("root_path", ""))


def _stream_url(request: Request, name: str, links: Links) -> str:
    query = request.url.query
    if name == "task":
        return links.page("/stream/task?id=") + quote(request.path_params["task_id"], safe="")
    if name == "workflow":
        group_id = quote(request.path_params["group_id"], safe="")
        return links.page("/stream/workflow?id=") + group_id
    return links.page(f"/stream/{name}") + (f"?{query}" if query else "")
