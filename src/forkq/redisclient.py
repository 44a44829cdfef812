"""A Redis client from a forkq URL, shared by the Redis broker and result backend (neither
should import the other): forkq's own query parameters are taken out before redis-py sees it."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

from forkq import __version__

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
    """How the client names itself to the server. Given its version, redis-py no longer reads
    its own package metadata from disk for every new connection (importlib.metadata): 0.5-1 ms
    of CPU each, in every child's start-up."""
    try:
        from redis.driver_info import DriverInfo
    except ImportError:  # redis-py before DriverInfo: the older keyword does the same
        return {"lib_version": redis.__version__}
    driver = DriverInfo(lib_version=redis.__version__).add_upstream_driver("forkq", __version__)
    return {"driver_info": driver}
