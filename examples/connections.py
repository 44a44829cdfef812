"""A connection opened in the master is never used by a child: each child opens its own.

The script runs a tiny TCP server that records which client port sent each request. The
worker's master connects once before fork; every child connects again after fork. The report
shows the master's connection carried no request from any child.

Run: python examples/connections.py
"""

from __future__ import annotations

import os
import socket
import socketserver
import threading
from collections import Counter
from typing import ClassVar

from forkq import Forkq

app = Forkq("connections")  # the module name: task names match in the worker


class Client:
    """Stands for any client library connection (a DB driver, an HTTP pool, ...)."""

    def __init__(self) -> None:
        port = int(os.environ["EXAMPLE_SERVER_PORT"])
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.opened_by = os.getpid()

    def request(self, text: str) -> str:
        self.sock.sendall(text.encode() + b"\n")
        return self.sock.makefile().readline().strip()


client: Client | None = None


@app.on_before_fork
def connect_in_master() -> None:
    global client
    client = Client()
    print(f"master pid {os.getpid()} connected from port {client.sock.getsockname()[1]}")


@app.on_after_fork
def connect_in_child() -> None:
    global client
    client = Client()  # never reuse the master's socket: its stream would interleave


@app.task
def who_am_i() -> dict[str, int]:
    assert client is not None and client.opened_by == os.getpid()
    client.request(f"hello from {os.getpid()}")
    return {
        "pid": os.getpid(),
        "port": client.sock.getsockname()[1],
        "fd": client.sock.fileno(),
        "broker_opened_by": app._owner_pid,  # forkq's own connections follow the same rule
    }


class _Recorder(socketserver.StreamRequestHandler):
    requests: ClassVar[Counter[int]] = Counter()

    def handle(self) -> None:
        for _ in self.rfile:
            _Recorder.requests[self.client_address[1]] += 1
            self.wfile.write(b"ok\n")


def main() -> None:
    from _harness import running_worker

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Recorder)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {"EXAMPLE_SERVER_PORT": str(server.server_address[1])}
    with running_worker(app, "connections", concurrency=3, extra_env=env):
        replies = [who_am_i.delay().get(timeout=60) for _ in range(12)]
    server.shutdown()
    children = {r["pid"]: r for r in replies}
    for pid, reply in sorted(children.items()):
        print(
            f"child pid {pid}: own socket port {reply['port']} (fd {reply['fd']}), "
            f"forkq broker connection opened by pid {reply['broker_opened_by']}"
        )
    used_ports = set(_Recorder.requests)
    assert used_ports == {r["port"] for r in replies}
    assert all(r["broker_opened_by"] == r["pid"] for r in replies)
    print(f"server saw requests from ports {sorted(used_ports)}: only the children's own")


if __name__ == "__main__":
    main()
