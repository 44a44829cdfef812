"""Broker engines, chosen by URL scheme. Each engine is one module, imported on demand."""

from __future__ import annotations

from urllib.parse import urlsplit

from forkq.brokers.base import Broker, Consumer, DeadLetter, Delivery
from forkq.exceptions import ConfigurationError
from forkq.settings import redacted

__all__ = ["Broker", "Consumer", "DeadLetter", "Delivery", "open_broker"]


def open_broker(url: str) -> Broker:
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from forkq.brokers.sqlite import SQLiteBroker

        return SQLiteBroker(url)
    if scheme in ("redis", "rediss"):
        from forkq.brokers.redis import RedisBroker

        return RedisBroker(url)
    if scheme in ("amqp", "amqps"):
        from forkq.brokers.amqp import AMQPBroker

        return AMQPBroker(url)
    if scheme == "memory":
        from forkq.brokers.memory import MemoryBroker

        return MemoryBroker(url)
    raise ConfigurationError(
        f"unsupported broker URL scheme {scheme!r} in {redacted(url)!r}: "
        "use sqlite:///PATH, redis://HOST:PORT/DB, amqp://USER:PASSWORD@HOST:PORT/VHOST "
        "or memory://"
    )
