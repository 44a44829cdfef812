"""Result backend engines, chosen by URL scheme. Each engine is one module."""

from __future__ import annotations

from urllib.parse import urlsplit

from forkq.backends.base import ResultBackend, ResultWrite, StoredResult
from forkq.exceptions import ConfigurationError
from forkq.settings import redacted

__all__ = ["ResultBackend", "ResultWrite", "StoredResult", "open_backend"]


def open_backend(url: str) -> ResultBackend:
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from forkq.backends.sqlite import SQLiteBackend

        return SQLiteBackend(url)
    if scheme in ("redis", "rediss"):
        from forkq.backends.redis import RedisBackend

        return RedisBackend(url)
    if scheme == "memory":
        from forkq.backends.memory import MemoryBackend

        return MemoryBackend(url)
    if scheme in ("amqp", "amqps"):
        raise ConfigurationError(
            "RabbitMQ keeps no results: set the result backend (Forkq(backend=...), --backend or "
            "FORKQ_RESULT_BACKEND) to a sqlite:/// or redis:// URL"
        )
    raise ConfigurationError(
        f"unsupported result backend URL scheme {scheme!r} in {redacted(url)!r}: "
        "use sqlite:///PATH, redis://HOST:PORT/DB or memory://"
    )
