"""The master's control socket: `forkq inspect` asks, the master answers from what it has.

One Unix socket per master, `<control dir>/<master pid>.sock` (control_dir.py: which
directory, and the checks that make it ours alone). A request is one JSON line,
`{"command": "stats", "args": {...}}` (args optional, an object); the reply is one JSON line,
then the master closes the connection. A handler that refuses its arguments raises
`BadArguments`: the reply is then `{"error": "<why>"}`, as for an unknown command.
Both ends check the other's user with SO_PEERCRED: the master answers only its own uid, and
`ask` believes only a master of its own uid. The listening socket and its connections are in
the master's selector: answering never blocks the loop for longer than a reply's write to a
local socket.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import socket
import struct
from collections.abc import Callable, Mapping
from typing import Any

from forkq.pool.control_dir import SUFFIX, ControlDir, ForeignSocket, open_worker_dir

log = logging.getLogger("forkq.master")

Handler = Callable[[Mapping[str, Any]], dict[str, Any]]  # the request's args -> the reply
_MAX_REQUEST = 65536
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class BadArguments(ValueError):
    """A handler's refusal of its request's arguments; the message says what to fix."""


def socket_name(pid: int) -> str:
    return f"{pid}{SUFFIX}"


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a connected Unix socket (SO_PEERCRED)."""
    _pid, uid, _gid = _UCRED.unpack(
        conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    )
    return int(uid)


class ControlServer:
    """Registers itself and its connections in the master's selector (with itself as the
    key's data): the master calls `on_readable` for them."""

    def __init__(self, handlers: dict[str, Handler], selector: selectors.BaseSelector) -> None:
        self.handlers = handlers
        self.selector = selector
        self.directory = open_worker_dir()
        self.name = socket_name(os.getpid())
        try:
            self.directory.unlink(self.name)  # ours from before a HUP re-exec, same pid
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(self.directory.entry(self.name))
            self.listener.listen(16)
            self.listener.setblocking(False)
        except BaseException:
            self.directory.close()
            raise
        selector.register(self.listener, selectors.EVENT_READ, self)

    def on_readable(self, source: object) -> None:
        assert isinstance(source, socket.socket)
        if source is self.listener:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return
            uid = peer_uid(conn)
            if uid != os.getuid():
                log.warning("control socket: refused a connection from uid %d", uid)
                conn.close()
                return
            conn.setblocking(False)
            self.selector.register(conn, selectors.EVENT_READ, self)
        else:
            self.selector.unregister(source)
            self.answer(source)

    def answer(self, conn: socket.socket) -> None:
        """Read the request (it is one small line, readable now) and reply."""
        try:
            request = json.loads(_read_line(conn) or b"{}")
            reply = self.dispatch(request)
            conn.settimeout(1.0)
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except (OSError, ValueError, AttributeError, RecursionError):
            pass  # a client that went away or sent junk gets nothing; the master goes on
        finally:
            conn.close()

    def dispatch(self, request: Any) -> dict[str, Any]:
        """The reply to one decoded request."""
        if not isinstance(request, dict):
            return {"error": "a request is a JSON object"}
        handler = self.handlers.get(str(request.get("command")))
        args = request.get("args") or {}
        if handler is None:
            return {"error": f"unknown command {request.get('command')!r}"}
        if not isinstance(args, dict):
            return {"error": "args must be a JSON object"}
        try:
            return handler(args)
        except BadArguments as exc:
            return {"error": str(exc)}

    def close(self) -> None:
        self.listener.close()
        self.directory.unlink(self.name)
        self.directory.close()


def _read_line(conn: socket.socket) -> bytes:
    """A request: readable now, at most `_MAX_REQUEST` bytes, ending at its newline. A client
    of ours that stalls mid-line holds the loop up to 0.2 s, then gets nothing."""
    conn.settimeout(0.2)
    data = b""
    while not data.endswith(b"\n") and len(data) < _MAX_REQUEST:
        chunk = conn.recv(_MAX_REQUEST - len(data))
        if not chunk:
            break
        data += chunk
    return data


def ask(
    directory: ControlDir,
    name: str,
    command: str,
    timeout: float = 5.0,
    args: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Client side: one request to the master listening on `name` in `directory`. Raises
    ForeignSocket if the socket or the process serving it is not ours, OSError if nothing
    answers."""
    directory.check_socket(name)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(directory.entry(name))
        uid = peer_uid(conn)
        if uid != os.getuid():
            raise ForeignSocket(
                f"not trusting {directory.path / name}: it is served by uid {uid}, not by you "
                f"(uid {os.getuid()}), so it is no worker of yours"
            )
        request = {"command": command, "args": dict(args or {})}
        conn.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    reply: dict[str, Any] = json.loads(data)
    return reply
