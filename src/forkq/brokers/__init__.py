"""Broker engines, chosen by URL scheme. Each engine is one module, imported on demand."""

from __future__ import annotations

from urllib.parse import urlsplit

from forkq.brokers.base import (
    DEFAULT_DEAD_CAPS,
    Broker,
    Consumer,
    DeadLetter,
    DeadLetterCaps,
    Delivery,
    Sighting,
)
from forkq.exceptions import ConfigurationError
from forkq.settings import redacted

__all__ = [
    "Broker",
    "Consumer",
    "DeadLetter",
    "DeadLetterCaps",
    "Delivery",
    "Sighting",
    "open_broker",
]


def open_broker(url: str, dead_caps: DeadLetterCaps | None = None) -> Broker:
    """The engine the URL's scheme names; `dead_caps`: the dead letters each queue keeps
    (default: `DeadLetterCaps()`)."""
    caps = DEFAULT_DEAD_CAPS if dead_caps is None else dead_caps
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from forkq.brokers.sqlite import SQLiteBroker

        return SQLiteBroker(url, caps)
    if scheme in ("redis", "rediss"):
        from forkq.brokers.redis import RedisBroker

        return RedisBroker(url, caps)
    if scheme in ("amqp", "amqps"):
        from forkq.brokers.amqp import AMQPBroker

        return AMQPBroker(url, caps)
    if scheme == "memory":
        from forkq.brokers.memory import MemoryBroker

        return MemoryBroker(url, caps)
    raise ConfigurationError(
        f"unsupported broker URL scheme {scheme!r} in {redacted(url)!r}: "
        "use sqlite:///PATH, redis://HOST:PORT/DB, amqp://USER:PASSWORD@HOST:PORT/VHOST "
        "or memory://"
    )
