"""The master's HTTP endpoint, on real sockets, driven by a selector loop like the master's:
it answers GET and HEAD, refuses the rest in one line, and no client, silent, slow, greedy
or hostile, holds up the loop or another client."""

from __future__ import annotations

import http.client
import selectors
import socket
import threading
import time
from collections.abc import Iterator, Mapping

import pytest

from forkq.pool import http_endpoint
from forkq.pool.http_endpoint import Address, HttpEndpoint, Response, Route, listen

pytestmark = pytest.mark.timeout(30)


class Served:
    """An endpoint on a free port, its loop in a thread: select until a deadline or an
    event, as the master's loop does (no polling); stopped through a socket pair."""

    def __init__(self, routes: Mapping[str, Route]) -> None:
        self.selector = selectors.DefaultSelector()
        self.endpoint = HttpEndpoint(listen(Address("127.0.0.1", 0)), self.selector, routes)
        self.port = self.endpoint.listener.getsockname()[1]
        self._wake, self._stop = socket.socketpair()
        self.selector.register(self._wake, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            deadline = self.endpoint.deadline
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            for key, _ in self.selector.select(timeout):
                if key.data is None:
                    return
                key.data.on_ready(key.fileobj)
            self.endpoint.expire(time.monotonic())

    def stop(self) -> None:
        self._stop.send(b"x")
        self._thread.join(timeout=5)
        self.endpoint.close()
        self.selector.close()
        self._wake.close()
        self._stop.close()

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def request(self, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path)
            reply = conn.getresponse()
            return reply.status, dict(reply.getheaders()), reply.read()
        finally:
            conn.close()

    def raw(self, data: bytes) -> bytes:
        with self.connect() as sock:
            sock.sendall(data)
            return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def boom() -> Response:
    raise RuntimeError("a bug in a route")


BIG = 16_000_000  # more than the kernel buffers between a server and a client that reads nothing
ROUTES: dict[str, Route] = {
    "/metrics": lambda: Response(200, b"forkq_up 1\n", "text/plain; version=0.0.4"),
    "/readyz": lambda: Response(503, b"not ready: stopping\n"),
    "/big": lambda: Response(200, b"x" * BIG),
    "/boom": boom,
}


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.setattr(http_endpoint, "TIMEOUT", 1.0)
    server = Served(ROUTES)
    yield server
    server.stop()


def test_get_and_head_are_answered_and_the_connection_closed(served: Served) -> None:
    status, headers, body = served.request("/metrics?x=1")
    assert (status, body) == (200, b"forkq_up 1\n")
    assert headers["Content-Type"] == "text/plain; version=0.0.4"
    assert (headers["Content-Length"], headers["Connection"]) == ("11", "close")
    status, headers, body = served.request("/readyz")
    assert (status, body) == (503, b"not ready: stopping\n")
    status, headers, body = served.request("/metrics", "HEAD")
    assert (status, headers["Content-Length"], body) == (200, "11", b"")
    # none left open: the loop's thread lets go of the last one just after the client's EOF
    deadline = time.monotonic() + 5
    while served.endpoint.fds != [served.endpoint.listener.fileno()]:
        assert time.monotonic() < deadline, served.endpoint.fds
        time.sleep(0.01)


@pytest.mark.parametrize(
    ("request_bytes", "status_line", "says"),
    [
        (b"GET /nope HTTP/1.1\r\n\r\n", b"HTTP/1.1 404 Not Found", b"/big, /boom, /metrics"),
        (b"POST /metrics HTTP/1.1\r\n\r\n", b"HTTP/1.1 405 Method Not Allowed", b"GET and HEAD"),
        (b"\x16\x03\x01\x02\x00\x01\x00\r\n\r\n", b"HTTP/1.1 400 Bad Request", b"METHOD PATH"),
        (b"GET /metrics\n\n", b"HTTP/1.1 400 Bad Request", b"HTTP/1.x"),
        (b"GET /metrics HTTP/1.0\n\n", b"HTTP/1.1 200 OK", b"forkq_up 1"),
        (b"GET /boom HTTP/1.1\r\n\r\n", b"HTTP/1.1 500 Internal Server Error", b"worker's log"),
    ],
)
def test_what_is_not_a_request_for_a_route_gets_a_status_and_one_line(
    served: Served, request_bytes: bytes, status_line: bytes, says: bytes
) -> None:
    reply = served.raw(request_bytes)
    assert reply.startswith(status_line + b"\r\n"), reply
    assert says in reply.split(b"\r\n\r\n", 1)[1]
    assert served.request("/metrics")[0] == 200  # the loop went on


def test_a_head_past_its_limit_is_refused_without_waiting_for_its_end(served: Served) -> None:
    with served.connect() as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Junk: " + b"a" * (http_endpoint.MAX_HEAD + 10))
        reply = read_all(sock)  # answered although the head never ended
    assert reply.startswith(b"HTTP/1.1 431 ")


def test_a_silent_client_holds_no_one_up_and_is_closed_at_its_deadline(served: Served) -> None:
    with served.connect() as silent:
        opened = time.monotonic()
        asked = time.monotonic()
        assert served.request("/metrics")[0] == 200
        assert time.monotonic() - asked < 0.5  # served at once, the silent one still open
        assert read_all(silent) == b""  # closed unanswered...
        assert 0.9 < time.monotonic() - opened < 3  # ...at its deadline (TIMEOUT 1 s)


def test_a_client_that_reads_nothing_holds_no_one_up(served: Served) -> None:
    with socket.socket() as greedy:
        greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting
        greedy.settimeout(10)
        greedy.connect(("127.0.0.1", served.port))
        greedy.sendall(b"GET /big HTTP/1.1\r\n\r\n")  # 16 MB it does not read for now
        asked = time.monotonic()
        assert served.request("/metrics")[0] == 200
        assert time.monotonic() - asked < 0.5
        time.sleep(1.5)  # what is tested: a client that reads nothing past the deadline
        received = read_all(greedy)
    assert 0 < len(received) < BIG  # cut off at the deadline, not sent whole


def test_past_the_connection_limit_the_oldest_goes(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_endpoint, "MAX_CONNECTIONS", 3)
    socks = [served.connect() for _ in range(3)]
    try:
        assert served.request("/metrics")[0] == 200  # a fourth: the first is closed for it
        assert read_all(socks[0]) == b""
        socks[1].sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
        assert read_all(socks[1]).startswith(b"HTTP/1.1 200 OK")
    finally:
        for sock in socks:
            sock.close()


def test_listen_takes_ipv6_and_refuses_a_port_in_use() -> None:
    listener = listen(Address("::1", 0))
    try:
        assert listener.family == socket.AF_INET6
        with pytest.raises(OSError, match="in use"):
            listen(Address("::1", listener.getsockname()[1]))
    finally:
        listener.close()
    assert str(Address("::", 9100)) == "[::]:9100"
    assert str(Address("0.0.0.0", 9100)) == "0.0.0.0:9100"
