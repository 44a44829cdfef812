"""Revoked ids on a Redis server that restarts without its data (no persistence), on a private
redis-server: its revocations' sequence starts again from 1, and a reader that had read the
old one reads everything again, whether the new sequence is still below its cursor or has
already passed it (the sequence's epoch: forkq/engines/contract/revocations.py)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator

import pytest
import redis

from forkq.engines.contract import ResultBackend
from forkq.engines.redis.keys import revoked_keys
from forkq.engines.registry import open_backend
from forkq.exceptions import BackendError
from forkq.worker.revoked import RevokedIds
from tests.redis_servers import PrivateRedis

pytestmark = pytest.mark.timeout(60)


def restart_empty(server: PrivateRedis) -> None:
    """Killed, its files gone, started again on the same port: a server without persistence."""
    server.kill()
    for entry in server.directory.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        elif entry.suffix in (".aof", ".rdb", ".manifest"):
            entry.unlink()
    server.start()


def reconnected(backend: ResultBackend) -> ResultBackend:
    """The client's first command after the restart may meet its old, dead connection."""
    with contextlib.suppress(BackendError):
        backend.get("probe")
    return backend


@pytest.fixture
def server(private_redis: PrivateRedis) -> PrivateRedis:
    return private_redis


@pytest.fixture
def backends(server: PrivateRedis) -> Iterator[tuple[ResultBackend, ResultBackend]]:
    writer, reader = open_backend(server.url), open_backend(server.url)
    yield writer, reader
    writer.close()
    reader.close()


@pytest.mark.parametrize("after_restart", [1, 5], ids=["below-the-cursor", "past-the-cursor"])
def test_a_reader_reads_everything_again_after_the_sequence_started_again(
    server: PrivateRedis, backends: tuple[ResultBackend, ResultBackend], after_restart: int
) -> None:
    writer, backend = backends
    writer.revoke(["a", "b", "c"], 60)
    reader = RevokedIds(backend)
    reader.refresh()
    assert all(reader.revoked(i) for i in "abc") and len(reader) == 3
    restart_empty(server)
    new = [f"new-{n}" for n in range(after_restart)]
    reconnected(writer).revoke(new, 60)  # numbered 1..after_restart: the old cursor was 3
    reconnected(backend)
    reader.refresh()
    assert [i for i in new if reader.revoked(i)] == new
    assert len(reader) == after_restart  # what the server lost is not held either


@pytest.mark.parametrize("junk", ["seq", "epoch", "order", "until"])
def test_a_key_of_another_type_reads_as_absent_rather_than_failing(
    backends: tuple[ResultBackend, ResultBackend], server: PrivateRedis, junk: str
) -> None:
    """A worker takes no task before it has read the revoked ids once: junk where they are
    kept must not keep every worker from working."""
    writer, backend = backends
    writer.revoke(["a"], 60)
    admin = redis.Redis.from_url(server.url)
    key = dict(zip(("order", "until", "seq", "epoch"), revoked_keys("forkq"), strict=True))[junk]
    admin.delete(key)
    admin.hset(key, "junk", "\xff")
    admin.close()
    found = backend.revocations()
    assert found.cursor == (0 if junk == "seq" else 1)
    assert [r.task_id for r in found.revoked] == (
        [] if junk in ("seq", "order", "until") else ["a"]
    )
