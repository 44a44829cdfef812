"""A small HTTP/1.1 server inside the master's selector loop: GET or HEAD of a few paths, one
request per connection, each answered at once from what the master holds in memory.

    listener readable   ─► accept what is waiting (non-blocking); over MAX_CONNECTIONS open,
                           the oldest is closed
    connection readable ─► recv what is there; the request head complete ─► its route's
                           Response ─► send what the socket takes now, the rest when writable
                           ─► close
    every connection    ─► closed unanswered at its deadline, TIMEOUT after it was accepted

Nothing here blocks: every socket is non-blocking, a read takes at most what one recv returns,
a head longer than MAX_HEAD is refused (431), and a client that sends nothing, or reads
nothing, only holds its own connection until its deadline, which the master's loop keeps as
one of its timers (`deadline`, `expire`), so it never polls. A route runs in the loop: it must
answer from memory (or from /proc), quickly. No threads: the master forks, and
prometheus_client's own server (`start_http_server`) runs in one.
"""

from __future__ import annotations

import logging
import selectors
import socket
import time
from collections.abc import Callable, Mapping

import msgspec

log = logging.getLogger("forkq.master")

MAX_HEAD = 8192  # bytes of request line and headers
MAX_CONNECTIONS = 32
TIMEOUT = 5.0  # seconds from accept to the last byte of the response
_READ = 4096
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
TEXT = "text/plain; charset=utf-8"


class Address(msgspec.Struct, frozen=True):
    """Where to listen: a host name or address (0.0.0.0, ::, 127.0.0.1) and a TCP port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class Response(msgspec.Struct, frozen=True):
    status: int
    body: bytes
    content_type: str = TEXT


Route = Callable[[], Response]


class _Connection:
    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.received = b""
        self.out: memoryview | None = None  # the response, from what is still to send


def listen(where: Address, backlog: int = 64) -> socket.socket:
    """A non-blocking listening TCP socket (the host a name, an IPv4 or IPv6 address);
    OSError when it cannot be had (socket.gaierror for a host that does not resolve)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        where.host, where.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # HUP's re-exec binds again
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class HttpEndpoint:
    """Registers its listener and connections in the master's selector, with itself as the
    keys' data: the master calls `on_ready` for them, and `expire` at `deadline`."""

    def __init__(
        self,
        listener: socket.socket,
        selector: selectors.BaseSelector,
        routes: Mapping[str, Route],
    ) -> None:
        self.listener = listener
        self.routes = routes
        self._selector = selector
        self._open: dict[int, _Connection] = {}  # by fd, oldest first
        listener.setblocking(False)
        selector.register(listener, selectors.EVENT_READ, self)

    @property
    def fds(self) -> list[int]:
        """The listener's and every connection's: no forked process may keep them."""
        return [self.listener.fileno(), *self._open]

    @property
    def deadline(self) -> float | None:
        """When the oldest connection times out (monotonic), if one is open."""
        return next((c.deadline for c in self._open.values()), None)

    def on_ready(self, source: object) -> None:
        if source is self.listener:
            self._accept()
            return
        assert isinstance(source, socket.socket)
        conn = self._open.get(source.fileno())
        if conn is None:
            return
        try:
            if conn.out is None:
                self._read(conn)
            else:
                self._write(conn)
        except (BlockingIOError, InterruptedError):
            return  # nothing to read, or no room to write, after all: the next event
        except OSError:
            self._close(conn)  # reset by the client, or gone: nothing more to say

    def expire(self, now: float) -> None:
        """Close the connections past their deadline."""
        for conn in [c for c in self._open.values() if c.deadline <= now]:
            self._close(conn)

    def close(self) -> None:
        for conn in list(self._open.values()):
            self._close(conn)
        self._selector.unregister(self.listener)
        self.listener.close()

    def _accept(self) -> None:
        for _ in range(MAX_CONNECTIONS):  # what is waiting now, a bounded amount of it
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, say: the next wake-up tries again
                log.warning("metrics endpoint: cannot accept a connection: %s", exc)
                return
            if len(self._open) >= MAX_CONNECTIONS:
                self._close(next(iter(self._open.values())))
            sock.setblocking(False)
            self._open[sock.fileno()] = _Connection(sock, time.monotonic() + TIMEOUT)
            self._selector.register(sock, selectors.EVENT_READ, self)

    def _read(self, conn: _Connection) -> None:
        chunk = conn.sock.recv(_READ)
        if not chunk:  # the client closed before a whole request came
            self._close(conn)
            return
        conn.received += chunk
        end = _head_end(conn.received)
        if end < 0 and len(conn.received) <= MAX_HEAD:
            return
        if end < 0 or end > MAX_HEAD:
            response, head_only = _text(431, "request head too large\n"), False
        else:
            response, head_only = self._answer(conn.received[:end])
        conn.out = memoryview(_encode(response, head_only))
        self._selector.modify(conn.sock, selectors.EVENT_WRITE, self)
        self._write(conn)  # most answers fit the socket's buffer: sent now

    def _answer(self, head: bytes) -> tuple[Response, bool]:
        """The response to a request head, and whether it is to a HEAD (no body sent)."""
        parts = head.split(b"\r\n", 1)[0].split(b"\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return _text(400, "a request line is METHOD PATH HTTP/1.x\n"), False
        method, target = parts[0], parts[1]
        if method not in (b"GET", b"HEAD"):
            return _text(405, "only GET and HEAD\n"), False
        route = self.routes.get(target.split(b"?", 1)[0].decode("latin-1"))
        if route is None:
            return _text(404, f"try {', '.join(sorted(self.routes))}\n"), method == b"HEAD"
        try:
            return route(), method == b"HEAD"
        except Exception:  # a bug in a route must not take the master down
            log.exception("metrics endpoint: %s failed", target.decode("latin-1"))
            return _text(500, "internal error: see the worker's log\n"), method == b"HEAD"

    def _write(self, conn: _Connection) -> None:
        assert conn.out is not None
        sent = conn.sock.send(conn.out)
        conn.out = conn.out[sent:]
        if not conn.out:
            self._close(conn)

    def _close(self, conn: _Connection) -> None:
        fd = conn.sock.fileno()
        if self._open.pop(fd, None) is not None:
            self._selector.unregister(conn.sock)
        conn.sock.close()


def _head_end(data: bytes) -> int:
    """Where the request head ends (after its blank line), or -1 while it has not."""
    for blank in (b"\r\n\r\n", b"\n\n"):
        at = data.find(blank)
        if at >= 0:
            return at + len(blank)
    return -1


def _text(status: int, body: str) -> Response:
    return Response(status, body.encode())


def _encode(response: Response, head_only: bool) -> bytes:
    reason = _REASONS.get(response.status, "")
    head = (
        f"HTTP/1.1 {response.status} {reason}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n"
    )
    if response.status == 405:
        head += "Allow: GET, HEAD\r\n"
    return (head + "\r\n").encode("latin-1") + (b"" if head_only else response.body)
