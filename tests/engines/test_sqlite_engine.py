"""What only the SQLite engine promises, beyond the conformance suite."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forkq.engines.contract import Burial, Consumer, Leftovers, Outgoing, outgoing
from forkq.engines.memory import MemoryBackend
from forkq.engines.sqlite.broker import SQLiteBroker
from forkq.engines.sqlite.results import SQLiteBackend
from forkq.exceptions import BrokerError, ConfigurationError

C = Consumer("w", "w/0")


def put(broker: SQLiteBroker, queue: str, body: bytes) -> None:
    broker.publish([outgoing(queue, body)])


def inotify_fds() -> int:
    return sum(
        1
        for fd in os.listdir("/proc/self/fd")
        if os.path.exists(f"/proc/self/fd/{fd}")
        and os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
    )


def test_a_fetch_that_finds_work_opens_no_watch(tmp_path: Path) -> None:
    # Closing an inotify watch costs milliseconds in the kernel; a short-lived child with work
    # waiting for it must not pay that.
    broker = SQLiteBroker(f"sqlite:///{tmp_path}/q.sqlite3")
    session = broker.consumer(C, MemoryBackend())
    before = inotify_fds()
    put(broker, "q", b"x")
    assert len(session.fetch(["q"], 1, 5.0)) == 1
    assert inotify_fds() == before
    assert session.fetch(["q"], 1, 0.05) == []  # had to wait: now it watches
    assert inotify_fds() == before + 1
    broker.close()
    assert inotify_fds() == before


def test_a_publish_of_several_is_all_or_nothing(tmp_path: Path) -> None:
    broker = SQLiteBroker(f"sqlite:///{tmp_path}/q.sqlite3")
    refused = Outgoing("q", None)  # type: ignore[arg-type] # the table refuses a NULL body
    with pytest.raises(BrokerError):
        broker.publish([outgoing("q", b"first"), refused])
    assert broker.size("q") == 0
    broker.close()


def test_a_dead_consumers_release_is_all_or_nothing(tmp_path: Path) -> None:
    # AUTOINCREMENT refuses every insert once the largest id has been used: dead-lettering
    # fails. The release must then neither ack nor give back anything the consumer held.
    broker = SQLiteBroker(f"sqlite:///{tmp_path}/q.sqlite3")
    for body in (b"finished", b"killed", b"prefetched"):
        put(broker, "q", body)
    finished, killed, _ = broker.consumer(C, MemoryBackend()).fetch(["q"], 3, 0)
    conn = sqlite3.connect(broker.path, isolation_level=None)
    conn.execute(
        "INSERT INTO forkq_dead (id, queue, priority, body, reason, failed_at, deliveries)"
        " VALUES (9223372036854775807, 'q', 0, X'', 'r', 0, 0)"
    )
    leftovers = Leftovers(
        finished=(("q", finished.receipt),), dead=(Burial("q", killed.receipt, "too long"),)
    )
    with pytest.raises(BrokerError):
        broker.release(C, leftovers)
    held = "SELECT COUNT(*) FROM forkq_messages WHERE owner = ?"
    assert conn.execute(held, (C.name,)).fetchone()[0] == 3
    conn.close()
    broker.close()


def test_schema_is_created_once_and_whole(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.sqlite3"
    first = SQLiteBroker(url)
    put(first, "q", b"kept")
    second = SQLiteBroker(url)  # sees the tables, does not recreate or empty them
    assert second.size("q") == 1
    names = {row[0] for row in second._conn.execute("SELECT name FROM sqlite_master").fetchall()}
    assert {"forkq_messages", "forkq_dead", "forkq_messages_ready"} <= names
    first.close()
    second.close()


def test_a_file_of_another_schema_version_is_refused_clearly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/q.sqlite3"
    SQLiteBroker(url).close()
    conn = sqlite3.connect(tmp_path / "q.sqlite3")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ConfigurationError, match="schema version 99"):
        SQLiteBroker(url)


@pytest.mark.slow
def test_a_change_seen_just_before_a_look_brings_short_waits_then_blocking(tmp_path: Path) -> None:
    """A commit's WAL write (the event) comes a moment before the commit is visible: a reader
    that drained the event and found nothing must look again soon, not sleep to its timeout."""
    from forkq.engines.sqlite.file import ChangeWaiter

    waiter = ChangeWaiter(str(tmp_path / "db.sqlite3"))
    (tmp_path / "db.sqlite3-wal").write_bytes(b"frames")  # the commit's write
    waiter.arm()  # drained, as a reader does right before it looks (and finds nothing yet)
    started = time.monotonic()
    assert waiter.wait(5.0) is True
    assert time.monotonic() - started < 0.5
    for _ in ChangeWaiter.SETTLE_STEPS:  # the short looks run out...
        waiter.wait(5.0)
    started = time.monotonic()
    assert waiter.wait(0.3) is False  # ...then, with nothing new, it blocks to its timeout
    assert time.monotonic() - started >= 0.25
    waiter.close()


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def open_engine(kind: str, url: str) -> SQLiteBroker | SQLiteBackend:
    """Open the engine and make it write, so that SQLite has made its -wal and -shm files."""
    if kind == "broker":
        broker = SQLiteBroker(url)
        put(broker, "q", b"x")
        return broker
    backend = SQLiteBackend(url)
    backend.store("t", "SUCCESS", b"x", 60)
    return backend


def modes(path: Path) -> list[int]:
    names = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
    return [stat.S_IMODE(name.stat().st_mode) for name in names]


@pytest.mark.parametrize("kind", ["broker", "backend"])
@pytest.mark.parametrize(
    ("query", "mask", "mode"),
    [
        # They hold every task's arguments and results: no other local user may read them.
        ("", 0o022, 0o600),
        ("?mode=0660&lease_ttl=10", 0o077, 0o660),  # set in the URL, whatever the umask
    ],
)
def test_a_new_database_and_its_wal_and_shm_get_their_mode_whatever_the_umask(
    tmp_path: Path, kind: str, query: str, mask: int, mode: int
) -> None:
    with umask(mask):
        engine = open_engine(kind, f"sqlite:///{tmp_path}/q.sqlite3{query}")
    assert modes(tmp_path / "q.sqlite3") == [mode, mode, mode]
    engine.close()


def test_an_existing_database_keeps_its_permissions(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    SQLiteBroker(f"sqlite:///{path}").close()
    path.chmod(0o640)  # chosen by its owner
    broker = open_engine("broker", f"sqlite:///{path}?mode=0600")
    assert modes(path) == [0o640, 0o640, 0o640]
    broker.close()


@pytest.mark.parametrize("mode", ["ro", "rwc", "0777", "0700", "0400", "0200", "1600", "-600"])
def test_a_mode_that_is_not_permissions_for_a_database_is_refused_in_one_line(
    tmp_path: Path, mode: str
) -> None:
    for engine in (SQLiteBroker, SQLiteBackend):
        with pytest.raises(ConfigurationError, match=r"^mode in .* must be octal") as refused:
            engine(f"sqlite:///{tmp_path}/q.sqlite3?mode={mode}")
        assert "\n" not in str(refused.value)
    assert not (tmp_path / "q.sqlite3").exists()
