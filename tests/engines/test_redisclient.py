"""The Redis client forkq opens: what it strips from the URL, what it costs to connect, and
the Wire its hot commands take."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from importlib import metadata

import pytest
import redis

from forkq.engines.contract import StoredResult
from forkq.engines.redis.client import Wire, client_from_url
from forkq.engines.redis.results import RedisBackend
from forkq.engines.registry import open_backend
from forkq.states import SUCCESS
from tests.conftest import REDIS, engine_url, redis_test_url


def test_forkq_parameters_stay_out_of_the_client_and_the_prefix_comes_back() -> None:
    client, prefix = client_from_url(redis_test_url(lease_ttl=5).replace("prefix=", "prefix=p-"))
    assert prefix.startswith("p-forkq-test-")
    assert not {"prefix", "lease_ttl"} & set(client.connection_pool.connection_kwargs)
    client.close()


def test_a_new_connection_reads_no_package_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    """redis-py looks its own version up on disk for each connection unless given it: about
    1 ms of a child's start-up, per connection."""
    lookups: list[str] = []
    real_version = metadata.version
    monkeypatch.setattr(
        metadata, "version", lambda name: lookups.append(name) or real_version(name)
    )
    client, _ = client_from_url(redis_test_url())
    assert client.ping()
    client.close()
    assert lookups == []


@pytest.fixture
def redis_url() -> Iterator[str]:
    yield from engine_url("redis", redis_test_url())


def _key(url: str, name: str) -> str:
    prefix = url.split("prefix=")[1]
    return f"{{{prefix}:{name}"  # under the prefix the fixture cleans up


def test_a_thread_finding_the_wire_busy_borrows_a_connection(redis_url: str) -> None:
    """A blocking read on the held connection does not hold up another thread's command."""
    client, _ = client_from_url(redis_url)
    wire, observer, key = Wire(client), redis.Redis.from_url(REDIS), _key(redis_url, "list")
    held_id = wire.call("CLIENT", "ID")
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(wire.call("BLPOP", key, 10)))
    reader.start()
    deadline = time.monotonic() + 10
    while b"cmd=blpop" not in observer.execute_command("CLIENT", "LIST", "ID", held_id):
        assert time.monotonic() < deadline, "the reader never blocked"
    assert wire.call("LPUSH", key, b"x") == 1  # on a borrowed connection: no wait for the lock
    reader.join(timeout=10)
    assert got == [[key.encode(), b"x"]]
    client.close()


def test_a_forked_child_opens_its_own_connection_and_leaves_the_parents(redis_url: str) -> None:
    client, _ = client_from_url(redis_url)
    wire = Wire(client)
    parent_id = wire.call("CLIENT", "ID")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's report travels through the pipe
        try:
            os.write(write_end, str(wire.call("CLIENT", "ID")).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as report:
        child_id = int(report.read())
    assert os.waitpid(pid, 0)[1] == 0
    assert child_id != parent_id
    assert wire.call("CLIENT", "ID") == parent_id  # still the same, still open
    client.close()


def test_a_script_the_server_does_not_know_is_loaded(redis_url: str) -> None:
    client, _ = client_from_url(redis_url)
    text = f"-- {uuid.uuid4().hex}\nreturn redis.call('INCR', KEYS[1])"  # new to the server
    script = client.register_script(text)
    key = _key(redis_url, "n")
    assert Wire(client).script(script, [key], []) == 1  # NOSCRIPT, then SCRIPT LOAD, EVALSHA
    assert Wire(client).script(script, [key], []) == 2
    client.close()


def test_a_connection_the_server_dropped_is_opened_again(redis_url: str) -> None:
    client, _ = client_from_url(redis_url)
    wire = Wire(client)
    first_id = wire.call("CLIENT", "ID")
    redis.Redis.from_url(REDIS).execute_command("CLIENT", "KILL", "ID", first_id)
    assert wire.call("CLIENT", "ID") != first_id  # redis-py's retry policy reconnected
    client.close()


def test_a_result_reader_whose_connection_the_server_dropped_reads_the_result(
    redis_url: str,
) -> None:
    """The result backend's get takes the Wire: its held connection, lost while idle (a
    server restart, a proxy's idle timeout), is opened again before the GET is sent."""
    backend = open_backend(redis_url)
    assert isinstance(backend, RedisBackend)
    backend.store("t", SUCCESS, b'{"state":"SUCCESS","result":4}', 60)
    assert backend.get("t") == StoredResult(SUCCESS, b'{"state":"SUCCESS","result":4}')
    held = backend._reader().call("CLIENT", "ID")
    redis.Redis.from_url(REDIS).execute_command("CLIENT", "KILL", "ID", held)
    assert backend.get("t") == StoredResult(SUCCESS, b'{"state":"SUCCESS","result":4}')
    assert backend.get("missing") is None
    backend.close()
