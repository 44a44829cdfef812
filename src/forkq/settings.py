"""Application settings: one typed, frozen record built once per app.

The environment is read when an app is created (`Settings.from_env`), never at import time,
so tests and embedding programs control it. Explicit arguments always win over the environment.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from forkq.exceptions import ConfigurationError

DEFAULT_URL = "sqlite:///forkq.sqlite3"
DEFAULT_QUEUE = "default"


def redacted(url: str) -> str:
    """The URL as logs and error messages show it: with its password, if any, as ***, and
    so the value of each query parameter whose name ends in `password` (`sentinel_password`)."""
    parts = urlsplit(url)
    query = "&".join(_masked(item) for item in parts.query.split("&"))
    if parts.password is None and query == parts.query:
        return url
    if parts.password is not None:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    return urlunsplit(parts._replace(query=query))


def _masked(item: str) -> str:
    name, equals, _ = item.partition("=")
    return f"{name}=***" if equals and name.endswith("password") else item


_ENV_NAMES: dict[str, str] = {
    "broker_url": "FORKQ_BROKER_URL",
    "result_backend": "FORKQ_RESULT_BACKEND",
    "secret": "FORKQ_SECRET",
    "default_queue": "FORKQ_DEFAULT_QUEUE",
    "result_ttl": "FORKQ_RESULT_TTL",
    "max_message_bytes": "FORKQ_MAX_MESSAGE_BYTES",
    "ignore_result": "FORKQ_IGNORE_RESULT",
    "eager": "FORKQ_EAGER",
    "dead_letter_max": "FORKQ_DEAD_LETTER_MAX",
    "dead_letter_ttl": "FORKQ_DEAD_LETTER_TTL",
    "events": "FORKQ_EVENTS",
    "events_url": "FORKQ_EVENTS_URL",
    "events_kept": "FORKQ_EVENTS_KEPT",
    "events_sent": "FORKQ_EVENTS_SENT",
}


class Settings(msgspec.Struct, frozen=True):
    broker_url: str = DEFAULT_URL
    result_backend: str | None = None  # None: the same URL as the broker
    default_queue: str = DEFAULT_QUEUE
    ignore_result: bool = False
    track_started: bool = False
    result_ttl: float = 86_400.0  # seconds a stored result stays readable
    secret: str | None = None  # HMAC key: when set, only signed messages run
    max_message_bytes: int = 1 << 20
    max_deliveries: int = 3  # a task whose process dies this often is failed as WorkerLost
    eager: bool = False  # tests: publishing runs the task in the caller (eager.py)
    dead_letter_max: int = 10_000  # per queue (RabbitMQ: per prefix), oldest go first; 0: all
    dead_letter_ttl: float = 7 * 86_400.0  # seconds a dead letter is kept; 0: for ever
    events: bool = False  # workers send task and worker events (forkq worker -E)
    events_url: str | None = None  # where events are kept; None: the result backend
    events_kept: int = 100_000  # the newest events kept; the oldest go first
    events_sent: bool = False  # clients send a `sent` event for each task they publish

    def __post_init__(self) -> None:
        if self.result_ttl <= 0:
            raise ConfigurationError(f"result_ttl must be > 0 seconds, got {self.result_ttl}")
        if self.max_message_bytes < 256:
            raise ConfigurationError(
                f"max_message_bytes must be at least 256, got {self.max_message_bytes}"
            )
        if self.max_deliveries < 1:
            raise ConfigurationError(f"max_deliveries must be >= 1, got {self.max_deliveries}")
        if self.dead_letter_max < 0:
            raise ConfigurationError(f"dead_letter_max must be >= 0, got {self.dead_letter_max}")
        if not 0 <= self.dead_letter_ttl <= 366 * 86_400:  # RabbitMQ holds TTLs of a few years
            raise ConfigurationError(
                f"dead_letter_ttl must be 0 (no cap) to 366 days in seconds, got "
                f"{self.dead_letter_ttl}"
            )
        if self.events_kept < 1:
            raise ConfigurationError(f"events_kept must be >= 1, got {self.events_kept}")
        if not self.default_queue:
            raise ConfigurationError("default_queue must not be empty")

    @property
    def backend_url(self) -> str:
        return self.result_backend or self.broker_url

    @property
    def events_store_url(self) -> str:
        return self.events_url or self.backend_url

    def replaced(self, **overrides: Any) -> Settings:
        """These settings with some replaced, each value checked against its setting's type
        (a whole number stands for a float; a string is no number)."""
        return msgspec.structs.replace(self, **_checked(overrides))

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **explicit: Any) -> Settings:
        """Environment values under the explicit ones; `None` explicit values are ignored."""
        values: dict[str, Any] = {}
        fields = {f.name: f for f in msgspec.structs.fields(cls)}
        for name, env_name in _ENV_NAMES.items():
            raw = environ.get(env_name)
            if raw is not None and raw != "":
                values[name] = _convert(env_name, raw, fields[name].type)
        values.update(_checked({k: v for k, v in explicit.items() if v is not None}))
        return cls(**values)


def _checked(values: Mapping[str, Any]) -> dict[str, Any]:
    """Values given by name (arguments, `configure`), each converted to its setting's type;
    an unknown name or a value of the wrong type is a `ConfigurationError`."""
    fields = {f.name: f for f in msgspec.structs.fields(Settings)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigurationError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    checked = {}
    for name, value in values.items():
        try:
            checked[name] = msgspec.convert(value, fields[name].type)
        except msgspec.ValidationError as exc:
            raise ConfigurationError(f"setting {name}={value!r}: {exc}") from None
    return checked


def _flag(raw: str) -> bool:
    word = raw.lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


# How an environment value (text) becomes a setting of each type; a type not listed here
# (`str`, `str | None`) takes the text as it is.
_FROM_TEXT: dict[type, Callable[[str], object]] = {bool: _flag, int: int, float: float}


def _convert(env_name: str, raw: str, annotation: object) -> object:
    if not isinstance(annotation, type) or annotation not in _FROM_TEXT:
        return raw
    try:
        return _FROM_TEXT[annotation](raw)
    except ValueError:
        kind = annotation.__name__
        raise ConfigurationError(f"{env_name}={raw!r} is not a valid {kind}") from None


def load_settings(**explicit: Any) -> Settings:
    return Settings.from_env(os.environ, **explicit)
