"""The link proxy on its own, in the root namespace (no root needed), in front of the shared
Redis: it forwards, delays each direction by what it is told without queueing, stalls, holds
one direction or both and delivers what it held on heal, resets, and leaves no socket or
thread behind."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import REDIS, redis_reachable, server_port
from tests.hosts.link import Direction, Link, ProxyLoop

pytestmark = pytest.mark.timeout(60)
QUIET = 0.3  # seconds a reply that is held must not arrive in


@pytest.fixture
def direct() -> Iterator[redis.Redis]:
    if not redis_reachable():
        if os.environ.get("CI") == "true":
            pytest.fail("Redis is not reachable on 127.0.0.1:6379 (CI=true: no skipping)")
        pytest.skip("no Redis on 127.0.0.1:6379 (scripts/ensure-services starts one)")
    client = redis.Redis.from_url(REDIS)
    yield client
    client.close()


@pytest.fixture
def link(direct: redis.Redis) -> Iterator[Link]:
    with ProxyLoop() as loop:
        link = Link(loop, ("127.0.0.1", 0), ("127.0.0.1", 6379))
        yield link
        link.close()


@pytest.fixture
def key(direct: redis.Redis) -> Iterator[str]:
    name = f"forkq-test-link-{uuid.uuid4().hex[:10]}"
    yield name
    direct.delete(name)


def connect(link: Link) -> socket.socket:
    return socket.create_connection((link.address, link.port), timeout=5)


def connect_to_tests_db(link: Link) -> socket.socket:
    """A connection through the link on the tests' database (the one `direct` reads)."""
    sock = connect(link)
    sock.sendall(f"SELECT {REDIS.rsplit('/', 1)[1]}\r\n".encode())
    assert reply(sock) == b"+OK\r\n"
    return sock


def reply(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def round_trip(sock: socket.socket) -> float:
    """Seconds a PING takes through the link (the least of three)."""
    times = []
    for _ in range(3):
        start = time.monotonic()
        sock.sendall(b"PING\r\n")
        assert reply(sock) == b"+PONG\r\n"
        times.append(time.monotonic() - start)
    return min(times)


def held(sock: socket.socket) -> bool:
    """No reply arrives within QUIET seconds."""
    sock.settimeout(QUIET)
    try:
        sock.recv(4096)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(5)
    return False


def test_forwards_each_connection_to_the_server(link: Link) -> None:
    with connect(link) as first, connect(link) as second:
        for sock in (first, second):
            sock.sendall(b"PING\r\n")
            assert reply(sock) == b"+PONG\r\n"
        assert (link.accepted, link.connections) == (2, 2)


def test_delay_is_added_per_direction(link: Link) -> None:
    with connect(link) as sock:
        assert round_trip(sock) < 0.05
        link.delay(100, Direction.UP)
        assert 0.1 <= round_trip(sock) < 0.18
        link.delay(150, Direction.DOWN)
        assert 0.25 <= round_trip(sock) < 0.33
        link.heal()
        assert round_trip(sock) < 0.05


def test_delay_adds_latency_not_a_queue(link: Link) -> None:
    """Twenty requests sent 10 ms apart over a 100 ms link: each arrives 100 ms after it was
    sent, so the last reply comes about 300 ms after the first request, not 2 s (which a
    proxy that slept before reading the next chunk would take)."""
    link.delay(100, Direction.UP)
    with connect(link) as sock:
        start = time.monotonic()
        for _ in range(20):
            sock.sendall(b"PING\r\n")
            time.sleep(0.01)  # separate chunks, spaced in time: the point of the test
        data = b""
        while data.count(b"+PONG\r\n") < 20:
            data += sock.recv(4096)
        assert 0.29 <= time.monotonic() - start < 0.8


def test_large_values_pass_whole_through_delay_and_stalls(
    link: Link, key: str, direct: redis.Redis
) -> None:
    """8 MiB each way, through a delay line that holds and stalls chunks: not a byte lost,
    reordered or changed (the line is bounded: reading stops while it is full)."""
    value = os.urandom(8 * 2**20)
    link.delay(20)
    link.loss(0.3, stall_ms=5)
    proxied = redis.Redis.from_url(f"redis://{link.address}:{link.port}/{REDIS.rsplit('/', 1)[1]}")
    try:
        assert proxied.set(key, value)
        assert direct.get(key) == value
        assert proxied.get(key) == value
    finally:
        proxied.close()


def test_loss_costs_a_stall(link: Link) -> None:
    with connect(link) as sock:
        link.loss(1.0, stall_ms=150, direction=Direction.DOWN)
        assert 0.15 <= round_trip(sock) < 0.23
        link.loss(0.0)
        assert round_trip(sock) < 0.05
    with pytest.raises(ValueError, match="give a fraction from 0 to 1"):
        link.loss(1.5)
    with pytest.raises(ValueError, match="give a value from 0"):
        link.delay(-1)


def test_blackhole_up_holds_requests_until_heal(link: Link, key: str, direct: redis.Redis) -> None:
    with connect_to_tests_db(link) as sock:
        link.blackhole(Direction.UP)
        sock.sendall(f"INCR {key}\r\n".encode())
        assert held(sock)
        assert direct.get(key) is None  # the request never reached Redis
        assert link.connections == 1  # nothing closed
        link.heal()
        assert reply(sock) == b":1\r\n"  # delivered on heal, on the same connection


def test_blackhole_down_holds_replies_until_heal(link: Link, key: str, direct: redis.Redis) -> None:
    with connect_to_tests_db(link) as sock:
        link.blackhole(Direction.DOWN)
        sock.sendall(f"INCR {key}\r\n".encode())
        assert held(sock)
        assert direct.get(key) == b"1"  # Redis ran it; only its reply is held
        link.heal()
        assert reply(sock) == b":1\r\n"


def test_cut_resets_every_connection_and_later_ones_pass(link: Link) -> None:
    with connect(link) as first, connect(link) as second:
        for sock in (first, second):
            round_trip(sock)
        assert link.cut() == 2
        for sock in (first, second):
            with pytest.raises(ConnectionResetError):
                sock.sendall(b"PING\r\n")
                reply(sock)
    with connect(link) as third:
        assert round_trip(third) < 0.05
    assert link.accepted == 3


def test_a_server_that_is_down_resets_the_client() -> None:
    with ProxyLoop() as loop:
        link = Link(loop, ("127.0.0.1", 0), ("127.0.0.1", server_port()))  # nothing there
        # the reset may come as early as the connect: pytest.raises is entered first
        with pytest.raises(ConnectionResetError), connect(link) as sock:
            sock.sendall(b"PING\r\n")
            reply(sock)
        assert link.connections == 0
        link.close()


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_close_leaves_no_socket_and_no_thread(direct: redis.Redis) -> None:
    before = open_fds()
    loop = ProxyLoop()
    links = [Link(loop, ("127.0.0.1", 0), ("127.0.0.1", 6379)) for _ in range(2)]
    clients = [connect(link) for link in links for _ in range(3)]
    for sock in clients:
        round_trip(sock)
    links[0].blackhole()
    clients[0].sendall(b"PING\r\n")  # held in the proxy when it closes
    for link in links:
        link.close()
    loop.close()
    for sock in clients:
        with pytest.raises(ConnectionError):
            sock.sendall(b"PING\r\n")
            reply(sock)
        sock.close()
    assert open_fds() == before
    assert "hosts-proxy" not in [thread.name for thread in threading.enumerate()]
