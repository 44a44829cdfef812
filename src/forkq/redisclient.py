"""A Redis client from a forkq URL, shared by the Redis broker and result backend (neither
should import the other): forkq's own query parameters are taken out before redis-py sees it."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

_OWN_PARAMS = ("prefix", "lease_ttl")


def client_from_url(url: str) -> tuple[redis.Redis, str]:
    """A client for the URL without forkq's own query parameters, and the key prefix."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    prefix = dict(query).get("prefix", "forkq")
    rest = urlencode([(k, v) for k, v in query if k not in _OWN_PARAMS])
    return redis.Redis.from_url(urlunsplit(parts._replace(query=rest))), prefix
