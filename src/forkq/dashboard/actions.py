"""What a user can do from the pages: grow, shrink or stop a worker's pool, revoke or
terminate a task, requeue or delete dead letters (one, or all of a queue or of every queue).
Each is a POST (security.py has checked its CSRF token), refused with 403 under --read-only,
done in the feed's I/O thread, and answered by a redirect to the page it came from with one
line saying what happened (a short-lived cookie, never the URL, so no link can make the page
say something)."""

from __future__ import annotations

import contextlib
import enum
from urllib.parse import parse_qs, quote, unquote

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from forkq.control_replies import Replies
from forkq.dashboard.config import DashboardConfig
from forkq.dashboard.feed import Feed
from forkq.dashboard.views.common import Links
from forkq.exceptions import ForkqError

SAID_COOKIE = "forkq_said"
DEAD_ALL = 1_000_000  # the letters of one queue requeued by "requeue all"
CONTROL_TIMEOUT = 2.0  # seconds a worker has to answer
WORKER_VERBS = {
    "grow": ("pool-grow", {"n": 1}, "grew by one child"),
    "shrink": ("pool-shrink", {"n": 1}, "shrank by one child"),
    "shutdown": ("shutdown", None, "is shutting down (warm)"),
}


class Actions:
    def __init__(self, feed: Feed, config: DashboardConfig) -> None:
        self.feed, self.config = feed, config

    async def worker(self, request: Request) -> Response:
        if self.config.read_only:
            return _read_only()
        host, verb = request.path_params["host"], request.path_params["verb"]
        if verb not in WORKER_VERBS:
            return PlainTextResponse(f"no such action: {verb}", 404)
        command, args, done = WORKER_VERBS[verb]
        try:
            replies = await self.feed.call(_broadcast, self.feed, command, args, host)
            said = _replied(replies, host, done)
        except ForkqError as exc:
            said = f"{command} not sent: {exc}"
        links = _links(request)
        return _back(links, links.page("/workers"), said)

    async def revoke(self, request: Request) -> Response:
        if self.config.read_only:
            return _read_only()
        task_id = request.path_params["task_id"]
        form = parse_qs((await request.body()).decode("latin-1"))
        terminate = form.get("terminate") == ["1"]
        try:
            await self.feed.call(_revoke, self.feed, task_id, terminate)
            said = f"{task_id} {'revoked and terminated' if terminate else 'revoked'}"
        except ForkqError as exc:
            said = f"{task_id} not revoked: {exc}"
        links = _links(request)
        return _back(links, links.task(task_id), said)

    async def dead(self, request: Request) -> Response:
        if self.config.read_only:
            return _read_only()
        action = DEAD_ACTIONS.get(request.path_params["verb"])
        if action is None:
            return PlainTextResponse("no such action", 404)
        form = parse_qs((await request.body()).decode("latin-1"))
        queue = form.get("queue", [""])[-1]
        receipts = None if form.get("all") == ["1"] else form.get("receipt", [])
        try:
            count = await self.feed.call(_on_dead, self.feed, action, receipts, queue)
            said = f"{action.value} {count} dead letter(s)"
        except ForkqError as exc:
            said = f"dead letters not changed: {exc}"
        with contextlib.suppress(ForkqError):  # the page says the broker's trouble itself
            await self.feed.reread_dead()
        links = _links(request)
        target = links.page("/dead") + (f"?queue={quote(queue, safe='')}" if queue else "")
        return _back(links, target, said)


class DeadAction(enum.Enum):
    REQUEUE = "requeued"
    DELETE = "deleted"


DEAD_ACTIONS = {"requeue": DeadAction.REQUEUE, "delete": DeadAction.DELETE}


def _on_dead(feed: Feed, action: DeadAction, receipts: list[str] | None, queue: str) -> int:
    """The letters named by `receipts`, or all (None): of `queue`, or of every queue."""
    broker = feed.app.broker
    if receipts is None and action is DeadAction.DELETE:
        return broker.purge_dead(queue or None)
    if receipts is None and queue:
        receipts = [d.receipt for d in broker.dead_letters(queue, DEAD_ALL)]
    chosen = None if receipts is None else frozenset(receipts)
    if action is DeadAction.DELETE:
        return broker.delete_dead(chosen or frozenset())
    return broker.requeue_dead(chosen)


def _broadcast(feed: Feed, command: str, args: dict[str, int] | None, host: str) -> Replies:
    return feed.app.control.broadcast(command, args, [host], CONTROL_TIMEOUT)


def _revoke(feed: Feed, task_id: str, terminate: bool) -> None:
    feed.app.revoke(task_id, terminate=terminate)


def _replied(replies: Replies, host: str, done: str) -> str:
    if host in replies.errors:
        return f"{host} refused: {replies.errors[host]}"
    if host in replies.replies:
        return f"{host} {done}"
    return f"{host} did not answer within {CONTROL_TIMEOUT:g}s"


def said(request: Request) -> str:
    """The line the last action left for this page, if any."""
    return unquote(request.cookies.get(SAID_COOKIE, ""))[:500]


def forget_said(request: Request, response: Response) -> None:
    if SAID_COOKIE in request.cookies:
        response.delete_cookie(SAID_COOKIE, path=_links(request).root or "/")


def _back(links: Links, target: str, text: str) -> Response:
    response = RedirectResponse(target, 303)
    response.set_cookie(
        SAID_COOKIE,
        quote(text[:500]),
        max_age=60,
        path=links.root or "/",
        httponly=True,
        samesite="strict",
    )
    return response


def _links(request: Request) -> Links:
    return Links(request.scope.get("root_path", ""))


def _read_only() -> Response:
    return PlainTextResponse("forbidden: this dashboard is read-only", 403)
