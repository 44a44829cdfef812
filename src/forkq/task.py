"""Tasks: a registered function plus its options, with the Celery-style calling API."""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Coroutine, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

import msgspec

from forkq.arguments import Conversion, SignatureCheck, conversion_for, task_parameters
from forkq.exceptions import ConfigurationError, MaxRetriesExceeded, Retry
from forkq.sending import CallOptions, due_delay
from forkq.throttle import DEFAULT_CONCURRENCY_LEASE, KeyFunction, Rate, Throttle, throttle_of
from forkq.unique import (
    DEFAULT_UNIQUE_FOR,
    UniqueWhile,
    check_unique_for,
    unique_of,
    unique_while,
)

if TYPE_CHECKING:
    from forkq.app import Forkq
    from forkq.result import AsyncResult

if TYPE_CHECKING:
    # Defaults (PEP 696, type checkers only): a bare `Task` is `Task[..., Any]`.
    from typing_extensions import ParamSpec as DefaultedParamSpec
    from typing_extensions import TypeVar as DefaultedTypeVar

    P = DefaultedParamSpec("P", default=...)
    R = DefaultedTypeVar("R", default=Any)
else:
    P = ParamSpec("P")
    R = TypeVar("R")


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
    unique_for: float | None = None  # seconds: a second send while the first is pending is it
    unique_while: UniqueWhile | str = UniqueWhile.PENDING  # or "running": held until it ends
    rate_limit: Rate | str | float | None = None  # "100/m": across all workers (throttle.py)
    rate_limit_key: KeyFunction | None = None  # (*args, **kwargs) -> a bucket per key
    concurrency: int | None = None  # at most this many running at once, across all workers
    concurrency_key: KeyFunction | None = None
    concurrency_lease: float = DEFAULT_CONCURRENCY_LEASE  # a slot's lease without a time limit
    throttle: Throttle | None = None  # made from the five above: not an option of its own
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
        check_unique_for(self.name, self.unique_for)
        msgspec.structs.force_setattr(
            self, "unique_while", unique_while(self.name, self.unique_while)
        )
        limits = (self.rate_limit, self.rate_limit_key, self.concurrency, self.concurrency_key)
        throttle = throttle_of(self.name, *limits, self.concurrency_lease)
        msgspec.structs.force_setattr(self, "throttle", throttle)
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
        made = ("name", "throttle")
        supported = [f.name for f in msgspec.structs.fields(cls) if f.name not in made]
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


class Request(msgspec.Struct, dict=True):
    """What a running task knows about its own invocation (`self.request` when bound); a
    task may set attributes of its own on it (`dict=True`), as on Celery's."""

    id: str = ""
    retries: int = 0
    queue: str = ""
    delivery_count: int = 0
    headers: dict[str, str] = msgspec.field(default_factory=dict)


class Task(Generic[P, R]):
    """A registered task. Generic in the parameters and return type of its function (for a
    bound task, those after `self`), so that type checkers check `delay()`'s arguments and
    type `delay(...).get()`."""

    def __init__(self, app: Forkq, fn: Callable[..., Any], options: TaskOptions) -> None:
        self.app = app
        self.fn = fn
        self.options = options  # may be replaced later: _defaults() follows it
        self._own = (options, _own_call_options(options))  # _defaults()'s, for these options
        self.request = Request()  # set by the worker around each run; one task per process
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    @property
    def name(self) -> str:
        return self.options.name

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    @property
    def ignores_result(self) -> bool:
        """Whether a success of this task goes unstored (failures are stored always)."""
        own = self.options.ignore_result
        return self.app.settings.ignore_result if own is None else own

    @functools.cached_property
    def signature_check(self) -> SignatureCheck | None:
        signature = task_parameters(self.fn, self.options.bind)
        return None if signature is None else SignatureCheck(self.name, signature)

    @functools.cached_property
    def conversion(self) -> Conversion | None:
        """How received arguments convert to the parameters' annotations (None: as they are)."""
        signature = task_parameters(self.fn, self.options.bind)
        return conversion_for(self.name, self.fn, signature)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run in this process, now, like the plain function."""
        if self.options.bind:
            return self.fn(self, *args, **kwargs)  # type: ignore[no-any-return]
        return self.fn(*args, **kwargs)  # type: ignore[no-any-return]

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
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
        unique_key: str | None = None,
        unique_for: float | None = None,
    ) -> AsyncResult[R]:
        """Send a call of the task with these options (`delay()` sends with none).

        `unique_key` makes it unique (a send while one with the same key is pending returns
        that one's handle), as `unique_for` on the task does with a key from the arguments;
        `unique_for` here sets how long this call's lock lasts at most."""
        if (
            countdown is None
            and eta is None
            and expires is None
            and queue is None
            and priority is None
            and task_id is None
            and headers is None
            and unique_key is None
            and unique_for is None
        ):  # delay()'s call: the task's own options (_defaults' lookup, inlined)
            own, options = self._own
            if own is not self.options:
                options = self._defaults()
        else:
            o = self.options  # the task's options where the call gives none
            options = CallOptions(
                countdown=countdown,
                eta=eta,
                expires=o.expires if expires is None else expires,
                queue=queue or o.queue,
                priority=o.priority if priority is None else priority,
                task_id=task_id,
                headers=headers,
                unique_key=unique_key,
                unique_for=unique_for,
            )
        return self._send(tuple(args), kwargs or {}, options)

    def _defaults(self) -> CallOptions:
        """How a call that gives no option of its own is sent: with the task's own options,
        those of `self.options` now (TaskOptions is frozen: a change is a new object)."""
        options, call_options = self._own
        if options is not self.options:
            options = self.options
            call_options = _own_call_options(options)
            self._own = (options, call_options)
        return call_options

    def _send(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], options: CallOptions
    ) -> AsyncResult[R]:
        self._check(args, kwargs)
        try:
            if self.options.unique_for is not None or options.unique_key is not None:
                return self._send_unique(args, kwargs, options)
            message = self.app._new_message(self.name, args, kwargs, options)
            return self.app.send_message(message)
        except TypeError as exc:
            raise self._unencodable(args, kwargs) or exc from None

    def _send_unique(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], options: CallOptions
    ) -> AsyncResult[R]:
        o = self.options
        check_unique_for(self.name, options.unique_for)
        until_end = o.unique_while is UniqueWhile.RUNNING
        unique = unique_of(self.name, args, kwargs, options.unique_key, until_end)
        ttl = options.unique_for or o.unique_for or DEFAULT_UNIQUE_FOR
        message = self.app._new_message(self.name, args, kwargs, options, unique)
        return self.app.send_unique(message, ttl)

    def map(self, argument_lists: Iterable[Iterable[Any]]) -> list[AsyncResult[R]]:
        """Enqueue one call per argument tuple in a single broker round trip."""
        calls = [tuple(args) for args in argument_lists]
        for args in calls:
            self._check(args, {})
        options = self._defaults()
        messages = [self.app._new_message(self.name, args, {}, options) for args in calls]
        try:
            return self.app.publish_many(messages)
        except TypeError as exc:
            raise next(filter(None, (self._unencodable(a, {}) for a in calls)), exc) from None

    def _check(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.options.typing and self.signature_check is not None:
            self.signature_check.check(args, kwargs)

    def _unencodable(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Exception | None:
        check = self.signature_check
        return None if check is None else check.unencodable(args, kwargs)

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
        # The exponent is capped where a float still holds the power (2.0**1024 overflows):
        # a task that retries for ever keeps its delay at retry_backoff_max (the product may
        # be inf, which min() caps too).
        delay = min(o.retry_backoff_max, base * 2.0 ** min(retries, MAX_DOUBLINGS))
        # Full jitter spreads a burst of failures so the retries do not arrive together.
        return random.uniform(0, delay) if o.retry_jitter else delay


def _own_call_options(options: TaskOptions) -> CallOptions:
    """The options a call of the task is sent with when it gives none of its own."""
    return CallOptions(expires=options.expires, queue=options.queue, priority=options.priority)


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


class AsyncTask(Task[P, R]):
    """A task whose function is a coroutine function: typed by the value it returns when
    awaited (`delay(...).get()`), while calling it here gives the coroutine."""

    def __call__(  # type: ignore[override]  # calling it gives the coroutine, not R
        self, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, R]:
        return super().__call__(*args, **kwargs)  # type: ignore[return-value]


class TaskDecorator(Protocol):
    """What `@app.task(...)` returns: typed by the function it decorates."""

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> AsyncTask[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class BoundTaskDecorator(Protocol):
    """What `@app.task(bind=True, ...)` returns: the task's parameters are those after `self`."""

    @overload
    def __call__(
        self, fn: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]], /
    ) -> AsyncTask[P, R]: ...
    @overload
    def __call__(self, fn: Callable[Concatenate[Any, P], R], /) -> Task[P, R]: ...
