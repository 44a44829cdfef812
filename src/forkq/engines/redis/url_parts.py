"""The parts `redis+sentinel://` and `redis+cluster://` URLs share: a list of `host:port`
addresses, and query parameters read as redis-py reads a `redis://` URL's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlencode

from redis.connection import parse_url

from forkq.exceptions import ConfigurationError

#: A one-line error about the URL, saying what is wrong with it (`what`).
Bad = Callable[[str], ConfigurationError]

# Taken from the URL's parts, never from its query: redis-py would let these override them.
_NOT_IN_QUERY = ("db", "host", "port", "username", "password", "path")


def addresses(hosts: str, default_port: int, role: str, bad: Bad) -> tuple[tuple[str, int], ...]:
    """`host:port,host,[IPv6]:port,...`; a host without a port is on `default_port`. `role`
    names what the hosts are in an error ("Sentinel", "node")."""
    if not hosts:
        raise bad(f"names no {role} host")
    return tuple(_address(item, default_port, role, bad) for item in hosts.split(","))


def _address(item: str, default_port: int, role: str, bad: Bad) -> tuple[str, int]:
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise bad(f"has a {role} without a host in {item!r}")
    if not port_text:
        return unquote(host), default_port
    if not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
        raise bad(f"has {role} port {port_text!r}, not a port number")
    return unquote(host), int(port_text)


def credentials(userinfo: str) -> tuple[str | None, str | None]:
    """The user and password of `user:password` (either may be absent)."""
    username, has_password, password = userinfo.partition(":")
    return unquote(username) or None, unquote(password) if has_password else None


def connection_options(query: list[tuple[str, str]], bad: Bad) -> dict[str, Any]:
    """The query's connection options (socket_timeout, ...), as redis-py reads a `redis://`
    URL's."""
    misplaced = [k for k, _ in query if k in _NOT_IN_QUERY]
    if misplaced:
        raise bad(f"sets {misplaced[0]!r} in its query; it goes in the URL's parts")
    try:
        options: dict[str, Any] = parse_url("redis://server/?" + urlencode(query))  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise bad(str(exc).rstrip(".")) from None
    options.pop("host", None)
    return options
