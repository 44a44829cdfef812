"""What `forkq dashboard` is told: where to listen, who may look, what it may do. Checked
when made: a dashboard that anyone on the network could reach is refused."""

from __future__ import annotations

import ipaddress
import re

import msgspec

from forkq.exceptions import ConfigurationError

_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")


class Credentials(msgspec.Struct, frozen=True):
    user: str
    password: str


class DashboardConfig(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 5555
    auth: Credentials | None = None  # HTTP basic
    token: str | None = None  # a bearer token, or ?token= once (then a cookie)
    read_only: bool = False  # no actions: their buttons hidden, their POSTs refused
    hide_args: bool = False  # task arguments and results not shown
    url_prefix: str = ""  # the path a reverse proxy serves it under, e.g. /forkq

    def __post_init__(self) -> None:
        if self.url_prefix and not _PREFIX.match(self.url_prefix):
            raise ConfigurationError(
                f"--url-prefix must be a path such as /forkq, not {self.url_prefix!r}"
            )
        if not self.protected and not is_loopback(self.host):
            raise ConfigurationError(
                f"--host {self.host} lets other machines in: give --auth user:password or "
                "--token (without them only a loopback address may be bound)"
            )
        if self.token is not None and len(self.token) < 16:
            raise ConfigurationError("--token must be at least 16 characters")

    @property
    def protected(self) -> bool:
        return self.auth is not None or self.token is not None


def parse_credentials(raw: str) -> Credentials:
    user, colon, password = raw.partition(":")
    if not (user and colon and password):
        raise ConfigurationError("--auth must be user:password, both non-empty")
    return Credentials(user, password)


def normal_prefix(raw: str | None) -> str:
    """'/forkq/' and 'forkq' are '/forkq'; '' and '/' are no prefix."""
    stripped = (raw or "").strip("/")
    return f"/{stripped}" if stripped else ""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
