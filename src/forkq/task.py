"""Tasks: a registered function plus its options, with the Celery-style calling API."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from forkq.envelope import make_message
from forkq.exceptions import ConfigurationError, MaxRetriesExceeded, Retry

if TYPE_CHECKING:
    from forkq.app import Forkq
    from forkq.result import AsyncResult


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
    time_limit: float | None = None
    soft_time_limit: float | None = None
    max_deliveries: int | None = None  # None: the app's setting

    def __post_init__(self) -> None:
        if not 0 <= self.priority <= 9:
            raise ConfigurationError(f"task {self.name}: priority must be 0-9")
        if self.max_retries is not None and self.max_retries < 0:
            raise ConfigurationError(f"task {self.name}: max_retries must be >= 0 or None")
        for option in ("autoretry_for", "dont_autoretry_for"):
            msgspec.structs.force_setattr(
                self, option, _exception_types(self.name, option, getattr(self, option))
            )
        unknown = set(self.retry_kwargs) - RETRY_KWARGS
        if unknown:
            raise ConfigurationError(
                f"task {self.name}: retry_kwargs takes {', '.join(sorted(RETRY_KWARGS))}, "
                f"not {', '.join(sorted(unknown))}"
            )
        for limit in ("time_limit", "soft_time_limit"):
            value = getattr(self, limit)
            if value is not None and value <= 0:
                raise ConfigurationError(f"task {self.name}: {limit} must be > 0 seconds")


class Request(msgspec.Struct, dict=True):
    """What a running task knows about its own invocation (`self.request` when bound); a
    task may set attributes of its own on it (`dict=True`), as on Celery's."""

    id: str = ""
    retries: int = 0
    queue: str = ""
    delivery_count: int = 0
    headers: dict[str, str] = msgspec.field(default_factory=dict)


class Task:
    def __init__(self, app: Forkq, fn: Callable[..., Any], options: TaskOptions) -> None:
        self.app = app
        self.fn = fn
        self.options = options
        self.request = Request()  # set by the worker around each run; one task per process
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    @property
    def name(self) -> str:
        return self.options.name

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run in this process, now, like the plain function."""
        if self.options.bind:
            return self.fn(self, *args, **kwargs)
        return self.fn(*args, **kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | float | None = None,
        expires: datetime | float | None = None,
        queue: str | None = None,
        priority: int | None = None,
        task_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> AsyncResult:
        return self.app.send_task(
            self.name,
            args,
            kwargs,
            countdown=countdown,
            eta=eta,
            expires=expires,
            queue=queue or self.options.queue,
            priority=self.options.priority if priority is None else priority,
            task_id=task_id,
            headers=headers,
        )

    def map(self, argument_lists: Iterable[Iterable[Any]]) -> list[AsyncResult]:
        """Enqueue one call per argument tuple in a single broker round trip."""
        queue = self.options.queue or self.app.settings.default_queue
        messages = [
            make_message(self.name, list(args), {}, queue=queue, priority=self.options.priority)
            for args in argument_lists
        ]
        return self.app.publish_many(messages)

    def retry(
        self,
        exc: BaseException | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        *,
        eta: datetime | float | None = None,
        throw: bool = True,
    ) -> Retry:
        """Retry the running task: raises `Retry`, which the worker turns into the next try.

        As with Celery, `self.retry(exc=exc)` raises by itself and `raise self.retry(exc=exc)`
        works as well; `throw=False` returns the `Retry` instead. With no retries left it
        raises `exc` (or `MaxRetriesExceeded`), so the task fails with the error that made
        it retry. Without `countdown` or `eta`, the delay is the task's back-off or
        `default_retry_delay`.
        """
        retry = self._next_retry(exc, countdown, max_retries, eta)
        if retry is None:
            if exc is not None:
                raise exc
            limit = self.options.max_retries if max_retries is None else max_retries
            raise MaxRetriesExceeded(f"{self.name} gave up after {limit} retries")
        if throw:
            raise retry
        return retry

    def autoretry(self, exc: BaseException) -> Retry | None:
        """The retry that `autoretry_for` makes of `exc` (with `retry_kwargs`), or None: not
        one of those errors, one of `dont_autoretry_for`, or no retries left."""
        o = self.options
        if not isinstance(exc, o.autoretry_for) or isinstance(exc, o.dont_autoretry_for):
            return None
        countdown = None if o.retry_backoff else o.retry_kwargs.get("countdown")
        return self._next_retry(
            exc, countdown, o.retry_kwargs.get("max_retries"), o.retry_kwargs.get("eta")
        )

    def _next_retry(
        self,
        exc: BaseException | None,
        countdown: float | None,
        max_retries: int | None,
        eta: datetime | float | None,
    ) -> Retry | None:
        limit = self.options.max_retries if max_retries is None else max_retries
        retries = self.request.retries
        if limit is not None and retries >= limit:
            return None
        if eta is not None:
            countdown = due_delay(countdown, eta)
        elif countdown is None:
            countdown = self.retry_delay(retries)
        return Retry(countdown, exc)

    def retry_delay(self, retries: int) -> float:
        """Seconds before retry number `retries + 1`."""
        o = self.options
        if not o.retry_backoff:
            return o.default_retry_delay
        base = 1.0 if o.retry_backoff is True else float(o.retry_backoff)
        delay = min(o.retry_backoff_max, base * (2**retries))
        # Full jitter spreads a burst of failures so the retries do not arrive together.
        return random.uniform(0, delay) if o.retry_jitter else delay


RETRY_KWARGS = frozenset({"countdown", "eta", "max_retries"})


def _exception_types(task: str, option: str, value: object) -> tuple[type[BaseException], ...]:
    """`autoretry_for` as Celery takes it: exception classes, in a tuple or list, or one."""
    types = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    for kind in types:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise ConfigurationError(f"task {task}: {option} takes exception classes, not {kind!r}")
    return types


def to_timestamp(moment: datetime | float | None) -> float | None:
    if moment is None or isinstance(moment, (int, float)):
        return moment
    if moment.tzinfo is None:
        raise ConfigurationError("eta/expires datetimes must be timezone-aware")
    return moment.timestamp()


def due_delay(countdown: float | None, eta: datetime | float | None) -> float:
    if countdown is not None and eta is not None:
        raise ConfigurationError("give countdown or eta, not both")
    if countdown is not None:
        return max(0.0, float(countdown))
    at = to_timestamp(eta)
    return 0.0 if at is None else max(0.0, at - time.time())
