"""A Redis client from a forkq URL, shared by the Redis broker and result backend (neither
should import the other): forkq's own query parameters are taken out before redis-py sees it."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

_OWN_PARAMS = ("prefix", "lease_ttl")


def client_from_url(url: str) -> tuple[redis.Redis, str]:
    """A client for the URL without forkq's own query parameters, and the key prefix."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    prefix = dict(query).get("prefix", "forkq")
    rest = urlencode([(k, v) for k, v in query if k not in _OWN_PARAMS])
    client = redis.Redis.from_url(urlunsplit(parts._replace(query=rest)), **_identity())
    return client, prefix


def _identity() -> dict[str, Any]:
    """No CLIENT SETINFO: redis-py would send it as two more round trips on every new
    connection (the worker's start-up opens several in a row), and to fill it in, read its
    own package metadata from disk each time (0.5-1 ms of CPU)."""
    try:
        from redis.driver_info import DriverInfo  # noqa: F401 - only whether it exists
    except ImportError:  # redis-py before DriverInfo: the older keywords do the same
        return {"lib_name": None, "lib_version": None}
    return {"driver_info": None}
