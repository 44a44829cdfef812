"""A task's options (`@app.task(**options)`), checked when the task is defined."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

from forkq.exceptions import ConfigurationError


class TaskOptions(msgspec.Struct, frozen=True):
    name: str
    queue: str | None = None  # None: the app's default queue
    priority: int = 0  # 0-9, 9 runs first
    bind: bool = False  # pass the task itself as the first argument (for self.retry)
    max_retries: int | None = 3  # None: retry for ever
    default_retry_delay: float = 180.0
    retry_backoff: bool | float = False  # True: 1 s base; a number: that base, doubled per try
    retry_backoff_max: float = 600.0
    retry_jitter: bool = True
    autoretry_for: tuple[type[BaseException], ...] = ()  # these exceptions retry the task
    dont_autoretry_for: tuple[type[BaseException], ...] = ()  # ... except these
    retry_kwargs: dict[str, Any] = {}  # self.retry()'s arguments for autoretry_for
    ignore_result: bool | None = None  # None: the app's setting
    track_started: bool | None = None  # None: the app's setting
    expires: float | datetime | None = None  # apply_async's default: seconds after sending
    time_limit: float | None = None
    soft_time_limit: float | None = None
    max_deliveries: int | None = None  # None: the app's setting
    typing: bool = True  # check the arguments of a call against the signature when sending
    # Celery's names for what forkq always does: ack once the result is stored, and let a
    # task whose process died run again (up to max_deliveries).
    acks_late: bool = True
    reject_on_worker_lost: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.priority <= 9:
            raise ConfigurationError(f"task {self.name}: priority must be 0-9")
        if self.max_retries is not None and self.max_retries < 0:
            raise ConfigurationError(f"task {self.name}: max_retries must be >= 0 or None")
        retried = _exception_types(self.name, "autoretry_for", self.autoretry_for)
        not_retried = _exception_types(self.name, "dont_autoretry_for", self.dont_autoretry_for)
        msgspec.structs.force_setattr(self, "autoretry_for", retried)
        msgspec.structs.force_setattr(self, "dont_autoretry_for", not_retried)
        unknown = set(self.retry_kwargs) - RETRY_KWARGS
        if unknown:
            raise ConfigurationError(
                f"task {self.name}: retry_kwargs takes {', '.join(sorted(RETRY_KWARGS))}, "
                f"not {', '.join(sorted(unknown))}"
            )
        wrong = _retry_kwargs_error(self.retry_kwargs)
        if wrong is not None:
            raise ConfigurationError(f"task {self.name}: retry_kwargs: {wrong}")
        for limit, value in (
            ("time_limit", self.time_limit),
            ("soft_time_limit", self.soft_time_limit),
        ):
            if value is not None and value <= 0:
                raise ConfigurationError(f"task {self.name}: {limit} must be > 0 seconds")
        if isinstance(self.expires, datetime) and self.expires.tzinfo is None:
            raise ConfigurationError(f"task {self.name}: expires must be a timezone-aware datetime")
        if isinstance(self.expires, (int, float)) and not 0 < self.expires < math.inf:
            raise ConfigurationError(f"task {self.name}: expires must be > 0 seconds")
        if not self.acks_late:
            raise ConfigurationError(
                f"task {self.name}: acks_late=False (ack before running, at most once) is not "
                "available: forkq acks only once the result is stored, so a task may run "
                "again after a crash; make it idempotent and drop the option"
            )
        if not self.reject_on_worker_lost and self.max_deliveries not in (None, 1):
            raise ConfigurationError(
                f"task {self.name}: reject_on_worker_lost=False means max_deliveries=1, "
                f"not {self.max_deliveries}"
            )

    @classmethod
    def build(cls, name: str, options: Mapping[str, Any]) -> TaskOptions:
        """The options of `@app.task(**options)`; an unknown one is named with the list of
        those supported."""
        supported = [f.name for f in msgspec.structs.fields(cls) if f.name != "name"]
        unknown = sorted(set(options) - set(supported))
        if unknown:
            raise ConfigurationError(
                f"task {name}: unknown option{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(unknown)}; supported: {', '.join(['name', *supported])}"
            )
        values = dict(options)
        if values.get("reject_on_worker_lost") is False and values.get("max_deliveries") is None:
            values["max_deliveries"] = 1  # the first lost process fails it, as in Celery
        return cls(name=name, **values)


RETRY_KWARGS = frozenset({"countdown", "eta", "max_retries"})
MAX_DOUBLINGS = 1000  # of the back-off's base: beyond any retry_backoff_max


def _retry_kwargs_error(kwargs: Mapping[str, Any]) -> str | None:
    """What is wrong with `retry_kwargs`' values, if anything: checked when the task is
    defined, since they are used only once it has failed (too late to be the caller's error)."""
    countdown, eta, limit = (kwargs.get(name) for name in ("countdown", "eta", "max_retries"))
    if countdown is not None and not (_is_number(countdown) and 0 <= countdown < math.inf):
        return f"countdown must be a number of seconds >= 0, not {countdown!r}"
    if eta is not None:
        if countdown is not None:
            return "give countdown or eta, not both"
        if isinstance(eta, datetime) and eta.tzinfo is None:
            return f"eta must be a timezone-aware datetime, not {eta!r}"
        if not (isinstance(eta, datetime) or (_is_number(eta) and math.isfinite(eta))):
            return f"eta must be an aware datetime or a Unix time, not {eta!r}"
    if limit is not None and not (_is_number(limit) and isinstance(limit, int) and limit >= 0):
        return f"max_retries must be an int >= 0 or None, not {limit!r}"
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _exception_types(task: str, option: str, value: object) -> tuple[type[BaseException], ...]:
    """`autoretry_for` as Celery takes it: exception classes, in a tuple or list, or one."""
    types = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    for kind in types:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise ConfigurationError(f"task {task}: {option} takes exception classes, not {kind!r}")
    return types
