"""The master's control socket: `forkq inspect` asks, the master answers from what it has.

One Unix socket per master, `<control dir>/<master pid>.sock`; the directory is
$FORKQ_CONTROL_DIR or /tmp/forkq-<uid> (mode 0700). A request is one JSON line,
`{"command": "stats"}`; the reply is one JSON line, then the master closes the connection.
The listening socket and its connections are in the master's selector: answering never
blocks the loop for longer than a reply's write to a local socket.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

Handler = Callable[[], dict[str, Any]]
_MAX_REQUEST = 4096


def control_dir() -> Path:
    configured = os.environ.get("FORKQ_CONTROL_DIR")
    path = Path(configured) if configured else Path(f"/tmp/forkq-{os.getuid()}")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_uid != os.getuid():
        raise PermissionError(f"control directory {path} belongs to another user")
    return path


def socket_path(pid: int) -> Path:
    return control_dir() / f"{pid}.sock"


class ControlServer:
    """Registers itself and its connections in the master's selector (with itself as the
    key's data): the master calls `on_readable` for them."""

    def __init__(self, handlers: dict[str, Handler], selector: selectors.BaseSelector) -> None:
        self.handlers = handlers
        self.selector = selector
        self.path = socket_path(os.getpid())
        self.path.unlink(missing_ok=True)  # ours from before a HUP re-exec, same pid
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.path))
        self.listener.listen(16)
        self.listener.setblocking(False)
        selector.register(self.listener, selectors.EVENT_READ, self)

    def on_readable(self, source: object) -> None:
        assert isinstance(source, socket.socket)
        if source is self.listener:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            self.selector.register(conn, selectors.EVENT_READ, self)
        else:
            self.selector.unregister(source)
            self.answer(source)

    def answer(self, conn: socket.socket) -> None:
        """Read the request (it is one small line, readable now) and reply."""
        try:
            request = json.loads(conn.recv(_MAX_REQUEST) or b"{}")
            handler = self.handlers.get(str(request.get("command")))
            reply = handler() if handler else {"error": f"unknown command {request!r}"}
            conn.settimeout(1.0)
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except (OSError, ValueError, AttributeError):
            pass  # a client that went away or sent junk gets nothing; the master goes on
        finally:
            conn.close()

    def close(self) -> None:
        self.listener.close()
        self.path.unlink(missing_ok=True)


def ask(path: Path, command: str, timeout: float = 5.0) -> dict[str, Any]:
    """Client side: one request to one master."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(path))
        conn.sendall(json.dumps({"command": command}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    reply: dict[str, Any] = json.loads(data)
    return reply
