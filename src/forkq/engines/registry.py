"""Which engine a URL names: one table from URL scheme to engine, for brokers and result
backends alike. Each engine's package is imported only when a URL names it, so a worker on
SQLite never imports redis-py or pika."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from forkq.engines.contract import (
    DEFAULT_DEAD_CAPS,
    Broker,
    DeadLetterCaps,
    Engine,
    ResultBackend,
)
from forkq.exceptions import ConfigurationError
from forkq.settings import redacted

__all__ = ["carries_control", "open_backend", "open_broker"]


def _sqlite() -> Engine:
    from forkq.engines import sqlite

    return sqlite.ENGINE


def _redis() -> Engine:
    from forkq.engines import redis

    return redis.ENGINE


def _amqp() -> Engine:
    from forkq.engines import amqp

    return amqp.ENGINE


def _memory() -> Engine:
    from forkq.engines import memory

    return memory.ENGINE


_SCHEMES: dict[str, Callable[[], Engine]] = {
    "sqlite": _sqlite,
    "redis": _redis,
    "rediss": _redis,
    "redis+sentinel": _redis,
    "redis+cluster": _redis,
    "amqp": _amqp,
    "amqps": _amqp,
    "memory": _memory,
}
_BROKER_FORMS = (
    "use sqlite:///PATH, redis://HOST:PORT/DB, redis+sentinel://HOST:PORT,.../MASTER_NAME/DB, "
    "redis+cluster://HOST:PORT,..., "
    "amqp://USER:PASSWORD@HOST:PORT/VHOST or memory://"
)
_RESULT_FORMS = (
    "use sqlite:///PATH, redis://HOST:PORT/DB, redis+sentinel://HOST:PORT,.../MASTER_NAME/DB, "
    "redis+cluster://HOST:PORT,... "
    "or memory://"
)


def _engine(url: str, what: str, forms: str) -> Engine:
    scheme = urlsplit(url).scheme
    load = _SCHEMES.get(scheme)
    if load is None:
        raise ConfigurationError(
            f"unsupported {what} URL scheme {scheme!r} in {redacted(url)!r}: {forms}"
        )
    return load()


def open_broker(url: str, dead_caps: DeadLetterCaps | None = None) -> Broker:
    """The broker of the engine the URL's scheme names; `dead_caps`: the dead letters each
    queue keeps (default: `DeadLetterCaps()`)."""
    engine = _engine(url, "broker", _BROKER_FORMS)
    return engine.broker(url, DEFAULT_DEAD_CAPS if dead_caps is None else dead_caps)


def open_backend(url: str) -> ResultBackend:
    """The result backend of the engine the URL's scheme names."""
    engine = _engine(url, "result backend", _RESULT_FORMS)
    if engine.results is None:
        raise ConfigurationError(
            f"{engine.name} keeps no results: set the result backend (Forkq(backend=...), "
            "--backend or FORKQ_RESULT_BACKEND) to a sqlite:/// or redis:// URL"
        )
    return engine.results(url)


def carries_control(url: str) -> bool:
    """Whether the broker the URL names carries control requests across hosts
    (`Broker.control_channel`), known without opening it (an SQLite broker would create its
    file)."""
    return _engine(url, "broker", _BROKER_FORMS).control
