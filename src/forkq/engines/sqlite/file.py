"""What the SQLite broker and result backend share: URL parsing, connections, transactions,
error translation, change waits.

SQLite has no notifications, so a waiting consumer watches the database's write-ahead log with
inotify: every commit by any process appends to `<db>-wal`, which wakes the waiter at once
and costs nothing while the queue is idle. The watch is on the directory so that it survives
the WAL file being deleted and created again.

A database file forkq creates is private to its owner (0600: it holds every task's arguments
and results), or has the permissions `?mode=` gives; SQLite creates the `-wal` and `-shm` files
with the database file's permissions. An existing file keeps its own.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from inotify_simple import INotify, flags

from forkq.engines.contract.errors import DriverErrors
from forkq.exceptions import (
    BackendError,
    BackendUnavailable,
    BrokerError,
    BrokerUnavailable,
    ConfigurationError,
)
from forkq.settings import redacted

BUSY_TIMEOUT_MS = 30_000
_WATCH_MASK = flags.MODIFY | flags.CREATE | flags.MOVED_TO


def path_from_url(url: str) -> str:
    """`sqlite:///relative.db` or `sqlite:////absolute/path.db` -> a filesystem path."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise ConfigurationError(f"not a sqlite URL: {url!r}")
    if parts.netloc:
        raise ConfigurationError(f"sqlite URL takes no host: {url!r} (use sqlite:///path)")
    path = unquote(parts.path)[1:] if parts.path.startswith("/") else unquote(parts.path)
    if not path or path == ":memory:":
        raise ConfigurationError(
            f"sqlite URL needs a file path that every process can open: {url!r}"
        )
    return path


def absolute_url(url: str) -> str:
    """A `sqlite:` URL with its path resolved against the current directory, as every process
    started here opens it (`sqlite:///forkq.sqlite3` -> `sqlite:////home/me/proj/forkq.sqlite3`);
    any other URL as it is."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        return url
    query = f"?{parts.query}" if parts.query else ""
    return f"sqlite:///{quote(os.path.abspath(path_from_url(url)))}{query}"


def shown_url(url: str) -> str:
    """A broker or backend URL as people should see it: SQLite paths absolute, passwords
    hidden."""
    return redacted(absolute_url(url))


DEFAULT_MODE = 0o600


def mode_from_url(url: str) -> int:
    """The `?mode=` URL parameter: octal permissions for a new database file (default 0600).
    The owner must keep read and write; execute and special bits are refused."""
    values = parse_qs(urlsplit(url).query).get("mode")
    if values is None:
        return DEFAULT_MODE
    try:
        mode = int(values[-1], 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777 or mode & 0o600 != 0o600 or mode & 0o111:
        raise ConfigurationError(
            f"mode in {redacted(url)!r} must be octal permissions for the database file with "
            f"read and write for its owner and no execute bits (e.g. 0600, 0640, 0660), "
            f"got {values[-1]!r}"
        )
    return mode


def create_private(path: str, mode: int) -> None:
    """Create the database file with exactly `mode` (whatever the umask) unless it exists:
    SQLite makes its -wal and -shm files with the database file's permissions."""
    flags_ = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags_, mode)
    except FileExistsError:
        return  # existing files, and one another process has just made, keep their mode
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def connect(path: str, mode: int = DEFAULT_MODE) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with WAL enabled; the file
    is created with `mode` if it does not exist."""
    _load_inotify()
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ConfigurationError(f"directory for sqlite database does not exist: {directory}")
    create_private(path, mode)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a commit survives a process crash; only an OS crash can lose the
    # last transactions. That is the durability a task queue on one host needs.
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def open_database(
    url: str, table: str, schema: str, error: type[Exception], what: str
) -> tuple[str, sqlite3.Connection]:
    """The path and a ready connection for an engine: WAL on, its tables made if need be."""
    path, mode = path_from_url(url), mode_from_url(url)
    try:
        conn = connect(path, mode)
        ensure_schema(conn, table, schema)
    except (sqlite3.Error, OSError) as exc:
        raise error(f"cannot open {what} {path}: {exc}") from exc
    return path, conn


SCHEMA_VERSION = 1  # stamped in the file's user_version; bump when a table changes


def ensure_schema(conn: sqlite3.Connection, table: str, script: str) -> None:
    """Create the tables unless `table` exists. The script runs in one transaction, so a
    table that exists means the whole script ran: later connections skip it with one read.
    A file stamped by another schema version is refused, not misread."""
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    if found is None:
        conn.executescript(
            f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;"
        )
        return
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version != SCHEMA_VERSION:
        raise ConfigurationError(
            f"this sqlite file has forkq schema version {version}, this forkq uses "
            f"{SCHEMA_VERSION}: drain and delete it, or give another path"
        )


def driver_errors_as(error: type[Exception], label: str) -> DriverErrors[sqlite3.Error]:
    """Translate sqlite3 errors at the engine's edge, keeping the driver's as the cause: a
    database busy or locked past the busy timeout is unavailable (BrokerUnavailable,
    BackendUnavailable), anything else `error` as it is."""
    return DriverErrors(sqlite3.Error, _busy, _UNAVAILABLE.get(error, error), error, label)


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """The statements inside as one write transaction, rolled back if any fails: BEGIN
    IMMEDIATE takes the write lock at once, so a transaction that reads first cannot fail to
    upgrade its lock half-way."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


_UNAVAILABLE: dict[type[Exception], type[Exception]] = {
    BrokerError: BrokerUnavailable,
    BackendError: BackendUnavailable,
}

if sys.version_info >= (3, 11):

    def _busy(exc: sqlite3.Error) -> bool:
        """SQLITE_BUSY or SQLITE_LOCKED, extended codes included (the low byte)."""
        if not isinstance(exc, sqlite3.OperationalError):
            return False
        try:
            code = exc.sqlite_errorcode
        except AttributeError:  # raised by the sqlite3 module, not by SQLite: no code
            return False
        return (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)

else:

    def _busy(exc: sqlite3.Error) -> bool:
        """Python 3.10 has no error codes: an OperationalError is the closest it says."""
        return isinstance(exc, sqlite3.OperationalError)


_ABANDONED: list[sqlite3.Connection] = []


def abandon(conn: sqlite3.Connection) -> None:
    """In a forked child, for a connection the parent opened: closing it could checkpoint or
    delete the parent's WAL, so keep the object alive and untouched until the child exits."""
    _ABANDONED.append(conn)


@functools.cache
def _load_inotify() -> None:
    """inotify_simple finds libc on first use by running `ldconfig -p` (about 14 ms). Do it
    once, in the process that opens the database first (the worker's master, before it
    forks), so that no child pays for it again."""
    INotify().close()


class ChangeWaiter:
    """Blocks until the database file is written to by anyone, or a timeout passes.

    Use: `arm()` before looking at the database, then `wait()` if nothing was found: a
    commit that lands between the two still wakes the wait, as its event stays queued.

    A commit writes its WAL frames (the events) a moment before it publishes them in the
    shared-memory index (no event: that file is mapped, not written), and a reader woken by
    the write can look in that moment and find nothing. So after the last change seen, the
    waits are short (1, 2, 4 ... 32 ms: a look 63 ms later at the latest) before they block.
    """

    SETTLE_STEPS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032)

    def __init__(self, path: str) -> None:
        absolute = os.path.abspath(path)
        self._names = {os.path.basename(absolute), os.path.basename(absolute) + "-wal"}
        self._inotify = INotify()
        self._inotify.add_watch(os.path.dirname(absolute), _WATCH_MASK)
        self._settle = 0  # index into SETTLE_STEPS; len() when settled

    def arm(self) -> None:
        """Forget changes seen so far."""
        if self._changed(self._inotify.read(timeout=0)):
            self._settle = 0

    def wait(self, timeout: float) -> bool:
        """True when the database changed since `arm()`, or may have (see above); False on
        timeout."""
        if self._settle < len(self.SETTLE_STEPS):
            step = min(self.SETTLE_STEPS[self._settle], timeout)
            if self._changed(self._inotify.read(timeout=max(1, int(step * 1000)))):
                self._settle = 0  # a newer change: start the short looks again
            else:
                self._settle += 1
            return True
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            events = self._inotify.read(timeout=max(1, int(remaining * 1000)))
            if self._changed(events):
                self._settle = 0
                return True

    def _changed(self, events: list[Any]) -> bool:
        return any(event.name in self._names for event in events)

    def close(self) -> None:
        self._inotify.close()
