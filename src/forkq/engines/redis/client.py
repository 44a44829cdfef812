"""Redis for the broker and the result backend (neither should import the other): a client
from a forkq URL, with forkq's own query parameters taken out before redis-py sees it, and the
`Wire` its hot commands take."""

from __future__ import annotations

import math
import os
import ssl
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from forkq.engines.contract.errors import DriverErrors, Refusal
from forkq.engines.redis.cluster import SCHEME as CLUSTER_SCHEME
from forkq.engines.redis.cluster import cluster_client, node_clients
from forkq.engines.redis.replication import REPLICATION_PARAMS
from forkq.engines.redis.sentinel import SCHEME as SENTINEL_SCHEME
from forkq.engines.redis.sentinel import close_sentinels, sentinel_client, sentinel_identity

_OWN_PARAMS = ("prefix", "lease_ttl", *REPLICATION_PARAMS)

#: A client of one server (`redis://`, `rediss://`, `redis+sentinel://`) or of a cluster.
Client: TypeAlias = redis.Redis | RedisCluster


def client_from_url(url: str) -> tuple[Client, str]:
    """A client for the URL without forkq's own query parameters, and the key prefix. A
    `redis+sentinel://` URL's client follows the primary the Sentinels name (`sentinel.py`);
    a `redis+cluster://` URL's finds each key's node (`cluster.py`)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    prefix = dict(query).get("prefix", "forkq")
    rest = [(k, v) for k, v in query if k not in _OWN_PARAMS]
    if parts.scheme == SENTINEL_SCHEME:
        return sentinel_client(url, rest, _identity()), prefix
    if parts.scheme == CLUSTER_SCHEME:
        return cluster_client(url, rest, _identity()), prefix
    plain = urlunsplit(parts._replace(query=urlencode(rest)))
    return redis.Redis.from_url(plain, **_identity()), prefix


def one_server(client: Client) -> redis.Redis:
    """The client itself, or for a cluster, the client of one of its nodes: each node's
    connections are made with the same settings."""
    if isinstance(client, RedisCluster):
        cluster: Any = client  # redis-py's cluster API is untyped
        server: redis.Redis = cluster.get_redis_connection(cluster.get_default_node())
        return server
    return client


def same_server(client: Client, other: Client) -> bool:
    """Whether two clients reach the same server and database, as the same user: through
    Sentinels, the same primary's name through the same Sentinels. Never for a cluster: its
    keys of a task and of a queue are on different slots, which one MULTI/EXEC cannot join."""
    if isinstance(client, RedisCluster) or isinstance(other, RedisCluster):
        return False
    mine = client.connection_pool.connection_kwargs
    theirs = other.connection_pool.connection_kwargs
    fields = ("host", "port", "db", "path", "username")
    same = all(mine.get(f) == theirs.get(f) for f in fields)
    return same and sentinel_identity(client) == sentinel_identity(other)


def close_client(client: Client) -> None:
    """Its connections closed, and those to its Sentinels if it has any."""
    client.close()
    if isinstance(client, redis.Redis):
        close_sentinels(client)


def abandon_client(client: Client) -> None:
    """Its connections dropped unused, in a child forked from the process that made them:
    redis-py notices the pid change and never shuts down the parent's sockets; dropping the
    pools is enough for this process to open its own on next use."""
    for one in node_clients(client) if isinstance(client, RedisCluster) else [client]:
        one.connection_pool.reset()


# Error replies of a server in the middle of a failover or a resharding: they pass.
_PASSING_REPLIES = (
    redis.exceptions.ReadOnlyError,  # a replica, or a primary demoted a moment ago
    redis.exceptions.MasterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)


def unreachable(exc: redis.RedisError) -> bool:
    """Whether a redis-py error is a connection problem (lost, refused, timed out, a server
    still loading its data, one failing over), expected to pass; not another error reply, a
    refused login, nor a certificate that does not verify."""
    if isinstance(exc, (redis.AuthenticationError, redis.exceptions.AuthorizationError)):
        return False
    if isinstance(exc.__context__, ssl.SSLCertVerificationError):
        return False
    return isinstance(exc, (redis.ConnectionError, redis.TimeoutError, *_PASSING_REPLIES))


#: What a write refused for want of memory says: the server has room for no more.
OUT_OF_MEMORY = (
    "the Redis server is out of memory: used memory is over its `maxmemory` and its "
    "`maxmemory-policy` (noeviction) refuses writes; nothing of this call was written. "
    "Free memory on that server (consume or purge queues, shorten result_ttl) or raise its "
    "maxmemory (CONFIG SET maxmemory, or redis.conf)"
)


def out_of_memory(exc: redis.RedisError) -> bool:
    """An OOM error reply: a write refused over `maxmemory`. Not a connection problem: it
    lasts until someone frees memory, so it is never ridden out as an outage."""
    return isinstance(exc, redis.exceptions.OutOfMemoryError)


def errors_as(
    unavailable: type[Exception], failed: type[Exception], full: type[Exception], label: str
) -> DriverErrors[redis.RedisError]:
    """Driver errors raised as forkq's: `full` for a write refused over `maxmemory`,
    `unavailable` for a connection problem, else `failed`; the broker and the result backend
    each name theirs."""
    refusal = Refusal(out_of_memory, full, OUT_OF_MEMORY)
    return DriverErrors(redis.RedisError, unreachable, unavailable, failed, label, refusal)


def read_timeout(client: Client) -> float | None:
    """The read timeout redis-py gives this client's connections (None: none). Taken from a
    connection built as the pool builds them, not from the pool's settings: redis-py 8 reads
    with 5 s when the URL names no socket_timeout (before 8, with none), and that default is
    the Connection's, absent from `connection_kwargs`. Building one opens no socket."""
    pool = one_server(client).connection_pool
    timeout: float | None = pool.connection_class(**pool.connection_kwargs).socket_timeout
    return timeout


def longest_block(client: Client) -> float:
    """Seconds a blocking command (XREADGROUP BLOCK, BLPOP) may ask the server to wait, so that
    the reply comes before the client's read times out: a read that times out is taken for
    an outage, loses what the server sent after, or, for a fetch, leaves what it delivered
    unknown to its consumer. The margin (a fifth of the timeout up to 1 s, at least 0.25 s)
    covers a server that answers a blocked client up to 1/hz (100 ms by default) late."""
    timeout = read_timeout(client)
    if not timeout:
        return math.inf
    return max(0.01, timeout - min(1.0, max(0.25, timeout / 5)))


def script_missing(replies: Sequence[Any]) -> bool:
    """Whether a reply of a pipeline run with `raise_on_error=False` is NOSCRIPT (a server that
    lost its scripts, or never had them); any other error reply is raised, the first first."""
    missing = False
    for reply in replies:
        if isinstance(reply, NoScriptError):
            missing = True
        elif isinstance(reply, Exception):
            raise reply
    return missing


def _identity() -> dict[str, Any]:
    """No CLIENT SETINFO: redis-py would send it as two more round trips on every new
    connection (the worker's start-up opens several in a row), and to fill it in, read its
    own package metadata from disk each time (0.5-1 ms of CPU)."""
    try:
        from redis.driver_info import DriverInfo  # noqa: F401 - only whether it exists
    except ImportError:  # redis-py before DriverInfo: the older keywords do the same
        return {"lib_name": None, "lib_version": None}
    return {"driver_info": None}


class Commands(Protocol):
    """Where commands are queued: a redis-py pipeline, or a `Batch` for the `Wire`."""

    def execute_command(self, *args: Any) -> Any: ...


class Batch:
    """Commands queued to go in one write on the `Wire` (`Wire.send_batch`), replies in order."""

    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []

    def execute_command(self, *args: Any) -> None:
        self.commands.append(args)


class GroupRead(msgspec.Struct, frozen=True):
    """An XREADGROUP's reply ([stream, entries] pairs, in the order the streams were asked),
    and the streams whose read was cut short, whose delivered entries may be unread."""

    reply: list[Any]
    unsure: tuple[str, ...] = ()


def read_command(
    group: str, consumer: str, count: int, block_ms: int, streams: Sequence[str]
) -> tuple[Any, ...]:
    """XREADGROUP of new entries, blocking up to `block_ms`."""
    return (
        "XREADGROUP", "GROUP", group, consumer, "COUNT", count, "BLOCK", block_ms,
        "STREAMS", *streams, *[">"] * len(streams),
    )  # fmt: skip


class Wire:
    """forkq's hot commands (publish, fetch, the blocking read) sent and read on a connection
    this process holds, past redis-py's per-command machinery.

    Why: in redis-py 8.1 a command through `Redis.execute_command` costs 30-40 µs of CPU more
    than the same command packed, sent and read on its `Connection` (the pool's check-out and
    check-in, events, metrics hooks, reply callbacks): a quarter of a whole round trip on this
    machine, paid by every publish and every fetch. The connection, its parser, TLS, auth and
    connection check are still redis-py's. Replies come back raw, not through redis-py's
    reply callbacks.

    One thread at a time uses the held connection; a thread that finds it busy takes one from
    the pool for the call. After a fork the child holds its own (the parent's socket is left
    alone, as redis-py's pool does). The held connection stays checked out of the pool, so a
    process that also uses the ordinary client (pipelines, settles) has two connections."""

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._held: Any = None
        self._pid = os.getpid()
        self._busy = threading.Lock()

    def call(self, *args: Any) -> Any:
        return self._on_connection(lambda conn: _send_read(conn, args))

    def script(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """EVALSHA, loading the script first if this server does not know it yet."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)

        def run(conn: Any) -> Any:
            try:
                return _send_read(conn, command)
            except NoScriptError:
                _send_read(conn, ("SCRIPT", "LOAD", script.script))
                return _send_read(conn, command)

        return self._on_connection(run)

    def read_groups(
        self, group: str, consumer: str, count: int, block_ms: int, streams: Sequence[str]
    ) -> GroupRead:
        """One XREADGROUP BLOCK over `streams`."""
        return GroupRead(self.call(*read_command(group, consumer, count, block_ms, streams)) or [])

    def send_batch(self, batch: Batch) -> list[Any]:
        """Every command of `batch` in one write, and their replies, in order. Every reply is
        read before an error reply is raised (the first), so none is left for a later call."""
        return self._on_connection(lambda conn: _send_read_all(conn, batch.commands))  # type: ignore[no-any-return]

    def send_transaction(self, batch: Batch, then: Sequence[tuple[Any, ...]] = ()) -> list[Any]:
        """`batch` in MULTI/EXEC, in one write: applied whole or not at all. Sent as a plain
        batch, a server over `maxmemory` would refuse its writes (SET, XADD) and apply the rest
        (XACK, XDEL, DEL): an ack without its result. In a transaction a write refused while
        queued aborts it all, and EXEC refuses a transaction with writes while over. `then`:
        commands sent after EXEC in the same write (a publish's WAIT). The replies of the
        batch's commands, in order, then those of `then`; the first error reply raised."""
        commands = [("MULTI",), *batch.commands, ("EXEC",), *then]
        replies = self._on_connection(lambda conn: _send_read_all(conn, commands))
        done: list[Any] = replies[len(replies) - len(then) - 1]
        for reply in done:
            if isinstance(reply, Exception):
                raise reply
        return [*done, *replies[len(replies) - len(then) :]]

    def connect(self) -> None:
        """Its connection opened if it is not (or no longer is: the server closed it), so that
        a server that is gone raises here, before anything is sent."""
        self._on_connection(lambda conn: conn.connect())

    def _on_connection(self, use: Callable[[Any], Any]) -> Any:
        if self._pid != os.getpid():
            self._pid, self._held, self._busy = os.getpid(), None, threading.Lock()
        held = False
        try:
            held = self._busy.acquire(blocking=False)
            if not held:
                conn = self._pool.get_connection()
                try:
                    return use(conn)
                finally:
                    self._pool.release(conn)
            if self._held is None:
                self._held = self._pool.get_connection()  # closed with the pool
            _make_ready(self._held)
            return use(self._held)
        finally:
            if held:
                self._busy.release()


def _make_ready(conn: Any) -> None:
    """The check redis-py's pool makes before it lends a connection: one with something to
    read (the server closed it, say after a restart) is opened again before anything is sent
    on it, so an idle connection's loss costs nothing and no command runs twice."""
    try:
        if not conn.can_read():
            return
    except redis.ConnectionError:
        pass
    conn.disconnect()


def _send_read_all(conn: Any, commands: Sequence[Sequence[Any]]) -> list[Any]:
    """Several commands in one write, as `_send_read` sends one."""
    replies: list[Any] = []
    failed: redis.ResponseError | None = None
    try:
        conn.send_packed_command(conn.pack_commands(commands))
        for _ in commands:
            try:
                replies.append(conn.read_response())
            except redis.ResponseError as exc:
                failed = failed or exc
                replies.append(exc)
    except BaseException:
        conn.disconnect()
        raise
    if failed is not None:
        raise failed
    return replies


def _send_read(conn: Any, args: Sequence[Any]) -> Any:
    """One command. Anything but an error reply (a lost connection, or an exception a signal
    handler raised, even between the send and the read) closes the connection, to be opened
    again by the next call: a reply left unread would be taken for the next command's."""
    try:
        conn.send_packed_command(conn.pack_command(*args))
        return conn.read_response()
    except redis.ResponseError:
        raise
    except BaseException:
        conn.disconnect()
        raise
