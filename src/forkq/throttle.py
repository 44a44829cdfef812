"""Rate and concurrency limits of a task: its options, checked when the task is defined.

    @app.task(rate_limit="100/m", rate_limit_key=fn, concurrency=N, concurrency_key=fn,
              concurrency_lease=S) ─► TaskOptions.throttle: a Throttle, or None (no limits:
                                      the worker pays one attribute check for it)

The worker enforces them (forkq/worker/admission.py) in the result backend, across all workers
(forkq/engines/contract/limits.py has the rules). A call picks its bucket with a header
(`forkq-rate-key`, `forkq-concurrency-key`), else the task's key function is called with the
call's arguments, else the task has one bucket.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import msgspec

from forkq.envelope import Message
from forkq.exceptions import ConfigurationError

RATE_KEY_HEADER = "forkq-rate-key"
CONCURRENCY_KEY_HEADER = "forkq-concurrency-key"
DEFAULT_CONCURRENCY_LEASE = 3600.0  # seconds a slot is held at most, without a hard time limit

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}

KeyFunction = Callable[..., Any]


class Rate(msgspec.Struct, frozen=True):
    """`count` starts per `per` seconds: one every `interval` seconds."""

    count: float
    per: float = 1.0

    @property
    def interval(self) -> float:
        return self.per / self.count

    def __str__(self) -> str:
        unit = {v: k for k, v in _UNITS.items()}.get(self.per)
        return f"{self.count:g}/{unit}" if unit else f"{self.count:g}/{self.per:g}s"


def parse_rate(value: object, what: str = "rate_limit") -> Rate:
    """Celery's format: "N/s", "N/m", "N/h", or a number (a string or not) per second."""
    if isinstance(value, Rate):
        return value
    count: float | None = None
    per = 1.0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        count = float(value)
    elif isinstance(value, str):
        number, _, unit = value.strip().partition("/")
        per_unit = _UNITS.get(unit.strip() or "s")
        try:
            count = float(number) if per_unit is not None else None
        except ValueError:
            count = None
        per = per_unit or per
    if count is None or not 0 < count < math.inf:
        raise ConfigurationError(
            f"{what} must be a number of tasks > 0 per second, or N/s, N/m or N/h "
            f"(N > 0), not {value!r}; None sets no limit"
        )
    return Rate(count, per)


class Throttle(msgspec.Struct, frozen=True):
    """A task's limits; at least one of `rate` and `concurrency` is set."""

    rate: Rate | None = None
    rate_key: KeyFunction | None = None
    concurrency: int | None = None
    concurrency_key: KeyFunction | None = None
    lease: float = DEFAULT_CONCURRENCY_LEASE  # without a hard time limit

    def rate_bucket(self, message: Message) -> str:
        """The call's rate bucket: its header, else its key function's answer, else ""."""
        return _bucket(message, RATE_KEY_HEADER, self.rate_key)

    def concurrency_bucket(self, message: Message) -> str:
        return _bucket(message, CONCURRENCY_KEY_HEADER, self.concurrency_key)


def throttle_of(
    task: str,
    rate_limit: object,
    rate_limit_key: object,
    concurrency: object,
    concurrency_key: object,
    concurrency_lease: object,
) -> Throttle | None:
    """The task's limits from its options, checked (a `ConfigurationError` names the task and
    the option); None when it has none."""
    rate = None if rate_limit is None else parse_rate(rate_limit, f"task {task}: rate_limit")
    if concurrency is not None and not (
        isinstance(concurrency, int) and not isinstance(concurrency, bool) and concurrency >= 1
    ):
        raise ConfigurationError(f"task {task}: concurrency must be an int >= 1 or None")
    if not (
        isinstance(concurrency_lease, (int, float))
        and not isinstance(concurrency_lease, bool)
        and 0 < concurrency_lease < 1e9
    ):
        raise ConfigurationError(f"task {task}: concurrency_lease must be a number of seconds > 0")
    rate_key = _key_function(task, "rate_limit_key", rate_limit_key, "rate_limit", rate)
    key = _key_function(task, "concurrency_key", concurrency_key, "concurrency", concurrency)
    if rate is None and concurrency is None:
        return None
    return Throttle(rate, rate_key, concurrency, key, float(concurrency_lease))


def _key_function(
    task: str, option: str, value: object, limit: str, limited: object
) -> KeyFunction | None:
    if value is None:
        return None
    if not callable(value):
        raise ConfigurationError(f"task {task}: {option} takes a function of the call's arguments")
    if limited is None:
        raise ConfigurationError(f"task {task}: {option} needs {limit}")
    return value


def _bucket(message: Message, header: str, key: KeyFunction | None) -> str:
    given = message.headers.get(header)
    if given is not None:
        return given
    if key is None:
        return ""
    value = key(*message.args, **message.kwargs)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"returned {value!r}, not a str or an int")
    return str(value)
