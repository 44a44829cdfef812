"""The path prefix a reverse proxy serves the dashboard under, as ASGI's `root_path`, so every
link, form, stream and static URL the pages make carries it.

With `--url-prefix /forkq` a request arrives either with the prefix (the proxy passes the
path on: `proxy_pass http://127.0.0.1:5555;`) or without it (the proxy strips it:
`proxy_pass http://127.0.0.1:5555/;`); both are served, since users write both. Without
`--url-prefix`, an `X-Forwarded-Prefix` header that is a plain path is honoured the same way.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

_PLAIN_PATH = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")


class PrefixMiddleware:
    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app, self.prefix = app, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            prefix = self.prefix or _forwarded_prefix(scope)
            if prefix:
                scope = dict(scope)
                path = scope["path"]
                if not (path == prefix or path.startswith(prefix + "/")):
                    scope["path"] = prefix + path  # the proxy stripped it
                scope["root_path"] = prefix
        await self.app(scope, receive, send)


def _forwarded_prefix(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-prefix":
            text = value.decode("latin-1").rstrip("/")
            return text if _PLAIN_PATH.match(text) else ""
    return ""
