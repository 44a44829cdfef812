"""Who may look, and that an action came from the dashboard's own page: one ASGI middleware
in front of every route (pages, the event stream, static files, actions).

- Auth: HTTP basic (`--auth`) or a token (`--token`: `Authorization: Bearer T`, or `?token=T`
  once, which sets an HttpOnly cookie and redirects to the same page without it). Anything
  else is 401. Without either the dashboard binds only a loopback address (config.py).
- CSRF: a random per-browser token in a SameSite=Strict cookie; every request that is not
  GET or HEAD must carry the same value in the `X-CSRF-Token` header or the `csrf` form field,
  and an `Origin` header, when sent, must be this host. Else 403.
- Headers: a Content-Security-Policy that allows only the dashboard's own scripts and styles,
  no framing, no sniffing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlencode, urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forkq.dashboard.config import DashboardConfig

CSRF_COOKIE = "forkq_csrf"
TOKEN_COOKIE = "forkq_token"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
MAX_FORM = 64 * 1024  # bytes of a form read to find its CSRF field
SAFE_METHODS = ("GET", "HEAD")
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, config: DashboardConfig) -> None:
        self.app, self.config = app, config
        # the token cookie holds a keyed digest of the token, never the token itself
        self._key = secrets.token_bytes(32)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        cookies = _cookies(headers)
        refused = self._refusal(scope, headers, cookies)
        if refused is not None:
            await refused(scope, receive, send)
            return
        csrf = cookies.get(CSRF_COOKIE) or ""
        fresh = not _well_formed(csrf)
        if fresh:
            csrf = secrets.token_urlsafe(32)
        elif scope["method"] not in SAFE_METHODS:
            receive, valid = await _check_csrf(scope, headers, receive, csrf)
            if not valid:
                await _forbidden("the form's CSRF token is missing or stale: reload the page")(
                    scope, receive, send
                )
                return
        if scope["method"] not in SAFE_METHODS and fresh:
            await _forbidden("no CSRF cookie: reload the page")(scope, receive, send)
            return
        scope.setdefault("state", {})["csrf"] = csrf
        await self.app(scope, receive, self._sending(scope, send, csrf if fresh else None))

    def _refusal(self, scope: Scope, headers: Headers, cookies: dict[str, str]) -> Response | None:
        if not self.config.protected:
            return None
        if self.config.token is not None:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = query.get("token", [""])[0]
            if given and _same(given, self.config.token) and scope["method"] in SAFE_METHODS:
                return self._token_login(scope, query)
            if _same(cookies.get(TOKEN_COOKIE, ""), self._digest(self.config.token)):
                return None
            if _same(_bearer(headers), self.config.token):
                return None
        if self.config.auth is not None:
            user, password = _basic(headers)
            if _same(user, self.config.auth.user) & _same(password, self.config.auth.password):
                return None
            return PlainTextResponse(
                "authentication required", 401, {"WWW-Authenticate": 'Basic realm="forkq"'}
            )
        return PlainTextResponse("authentication required: give the dashboard's token", 401)

    def _token_login(self, scope: Scope, query: dict[str, list[str]]) -> Response:
        rest = {k: v for k, v in query.items() if k != "token"}
        target = scope.get("root_path", "") + _route_path(scope)
        if rest:
            target += "?" + urlencode(rest, doseq=True)
        response = RedirectResponse(target, 303)
        response.set_cookie(
            TOKEN_COOKIE,
            self._digest(self.config.token or ""),
            path=_cookie_path(scope),
            httponly=True,
            samesite="strict",
        )
        return response

    def _digest(self, token: str) -> str:
        return hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()

    def _sending(self, scope: Scope, send: Send, new_csrf: str | None) -> Send:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("content-security-policy", POLICY)
                headers.setdefault("x-content-type-options", "nosniff")
                headers.setdefault("referrer-policy", "same-origin")
                headers.setdefault("x-frame-options", "DENY")
                if new_csrf is not None:
                    headers.append("set-cookie", _csrf_cookie(new_csrf, _cookie_path(scope)))
            await send(message)

        return sending


async def _check_csrf(
    scope: Scope, headers: Headers, receive: Receive, expected: str
) -> tuple[Receive, bool]:
    """Whether the request carries the cookie's CSRF token (header or form field) and comes
    from this host; the body read is handed on to the route unchanged."""
    origin = headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != headers.get("host", ""):
        return receive, False
    if _same(headers.get(CSRF_HEADER, ""), expected):
        return receive, True
    body, complete = await _read_body(receive)
    if not complete:
        return receive, False
    form = parse_qs(body.decode("latin-1")) if _is_form(headers) else {}
    valid = _same(form.get(CSRF_FIELD, [""])[0], expected)
    return _replay(body), valid


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"", False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM:
            return b"", False
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


def _is_form(headers: Headers) -> bool:
    return headers.get("content-type", "").startswith("application/x-www-form-urlencoded")


def _forbidden(reason: str) -> Response:
    return PlainTextResponse(f"forbidden: {reason}", 403)


def _cookies(headers: Headers) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header: as if none was sent
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def _csrf_cookie(value: str, path: str) -> str:
    return f"{CSRF_COOKIE}={value}; Path={path}; HttpOnly; SameSite=Strict"


def _cookie_path(scope: Scope) -> str:
    return scope.get("root_path", "") or "/"


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _well_formed(csrf: str) -> bool:
    return 32 <= len(csrf) <= 64 and csrf.replace("-", "").replace("_", "").isalnum()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _bearer(headers: Headers) -> str:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _basic(headers: Headers) -> tuple[str, str]:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    user, _, password = decoded.partition(":")
    return user, password
