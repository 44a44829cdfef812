"""`redis+sentinel://` URLs: a client of whichever server the Sentinels name primary.

    redis+sentinel://[user:password@]host1:port1,host2:port2,.../MASTER_NAME/DB

The user and password are the data servers' (primary and replicas); `?sentinel_password=`
(and `?sentinel_username=`) the Sentinels' own, when they have one. A host without a port
is on 26379; the DB defaults to 0. Other query parameters (socket_timeout, ...) are read as
redis-py reads a `redis://` URL's, and apply to the data servers and the Sentinels alike.

The client is redis-py's `Sentinel.master_for`: each new connection asks the Sentinels for the
primary's address, and one that meets a demoted primary (READONLY) is closed and raised as a
connection error, so forkq's callers treat a failover as the outage it is and their next
attempt connects to the new primary.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import msgspec
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool

from forkq.engines.redis.url_parts import addresses, connection_options, credentials
from forkq.exceptions import ConfigurationError
from forkq.settings import redacted

SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379
_FORM = "redis+sentinel://[user:password@]host:port[,host:port...]/MASTER_NAME/DB"
_OWN = ("sentinel_password", "sentinel_username")


class SentinelTarget(msgspec.Struct, frozen=True):
    """What a `redis+sentinel://` URL names."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    username: str | None
    password: str | None


def parse_sentinel_url(url: str) -> SentinelTarget:
    """The Sentinels, the primary's name and the database; a `ConfigurationError` of one
    line for a URL not of the form."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    segments = parts.path.split("/")[1:]
    if not segments or not segments[0]:
        raise _bad(url, "names no master (the path's first segment)")
    if len(segments) > 2:
        raise _bad(url, "has a path of more than /MASTER_NAME/DB")
    db_text = segments[1] if len(segments) == 2 else ""
    if db_text and not (db_text.isascii() and db_text.isdigit()):
        raise _bad(url, f"has database {db_text!r}, not a number")
    username, password = credentials(userinfo)
    sentinels = addresses(hosts, DEFAULT_SENTINEL_PORT, "Sentinel", lambda what: _bad(url, what))
    return SentinelTarget(sentinels, unquote(segments[0]), int(db_text or 0), username, password)


def _bad(url: str, what: str) -> ConfigurationError:
    return ConfigurationError(f"{redacted(url)!r} {what}: use {_FORM}")


def sentinel_client(
    url: str, query: list[tuple[str, str]], identity: dict[str, Any]
) -> redis.Redis:
    """A client of the primary the URL's Sentinels name; `query`: the URL's parameters
    forkq does not read itself."""
    target = parse_sentinel_url(url)
    own = {k: v for k, v in query if k in _OWN}
    rest = [(k, v) for k, v in query if k not in _OWN]
    options = connection_options(rest, lambda what: _bad(url, what))
    sentinel_options = {k: v for k, v in options.items() if k.startswith("socket_")}
    # One attempt per Sentinel, then the next: redis-py's default for a client made by host
    # and port retries ten times with back-off (3.7 s on a refused Sentinel, per connection
    # made), where forkq's callers back off themselves, as with `redis://` clients.
    sentinel_options.update(identity, retry=Retry(NoBackoff(), 0))
    if "sentinel_password" in own:
        sentinel_options["password"] = own["sentinel_password"]
    if "sentinel_username" in own:
        sentinel_options["username"] = own["sentinel_username"]
    manager = _Sentinels(list(target.sentinels), sentinel_kwargs=sentinel_options)
    client: redis.Redis = manager.master_for(  # type: ignore[no-untyped-call]
        target.master,
        db=target.db,
        username=target.username,
        password=target.password,
        **options,
        **identity,
    )
    return client


class _Sentinels(Sentinel):
    """redis-py's, with a one-line error when no Sentinel names a primary that is up (redis-py's
    holds the repr of every Sentinel's client)."""

    def __init__(self, sentinels: list[tuple[str, int]], sentinel_kwargs: dict[str, Any]) -> None:
        super().__init__(sentinels, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
        self.addresses = ", ".join(f"{host}:{port}" for host, port in sentinels)

    def discover_master(self, service_name: str) -> tuple[str, int]:
        try:
            address: tuple[str, int] = super().discover_master(service_name)  # type: ignore[no-untyped-call]
        except MasterNotFoundError:
            raise MasterNotFoundError(
                f"no Sentinel of {self.addresses} names a primary {service_name!r} that is up "
                "(unreachable, failing over, or not monitoring it)"
            ) from None
        return address


def sentinel_identity(client: redis.Redis) -> tuple[object, ...] | None:
    """The primary's name and the Sentinels' addresses, for a client made here (else None):
    two clients of the same name through the same Sentinels reach the same server."""
    pool = client.connection_pool
    if not isinstance(pool, SentinelConnectionPool):
        return None
    manager: Sentinel = pool.sentinel_manager
    kwargs = [s.connection_pool.connection_kwargs for s in manager.sentinels]
    addresses = frozenset((k.get("host"), k.get("port")) for k in kwargs)
    return (pool.service_name, addresses)


def close_sentinels(client: redis.Redis) -> None:
    """Close the connections to the Sentinels of a client made here (none otherwise)."""
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        manager: Sentinel = pool.sentinel_manager
        for sentinel in manager.sentinels:
            sentinel.close()
