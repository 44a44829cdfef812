"""Tasks: a registered function plus its options, with the Celery-style calling API."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Coroutine, Iterable, Mapping
from datetime import datetime
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    ParamSpec,
    Protocol,
    TypeVar,
    cast,
    overload,
)

import msgspec

from forkq.arguments import Conversion, SignatureCheck, conversion_for, task_parameters
from forkq.canvas.groups import group
from forkq.canvas.signature import Signature
from forkq.exceptions import ConfigurationError, MaxRetriesExceeded, Retry
from forkq.flow import STARMAP_TASK
from forkq.sending import CallOptions, due_delay
from forkq.task_options import MAX_DOUBLINGS, TaskOptions

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
        link: Signature | Iterable[Signature] | None = None,
        link_error: Signature | Iterable[Signature] | None = None,
    ) -> AsyncResult[R]:
        """Send a call of the task; `link` callbacks are sent its result when it succeeds,
        `link_error` ones its id when it fails (see forkq.canvas)."""
        if (
            countdown is None
            and eta is None
            and expires is None
            and queue is None
            and priority is None
            and task_id is None
            and headers is None
            and link is None
            and link_error is None
        ):  # delay()'s call: the task's own options (_defaults' lookup, inlined)
            own, options = self._own
            if own is not self.options:
                options = self._defaults()
        elif link is not None or link_error is not None:
            given = {
                "countdown": countdown,
                "eta": eta,
                "expires": expires,
                "queue": queue,
                "priority": priority,
                "task_id": task_id,
                "headers": headers,
            }
            chosen = {k: v for k, v in given.items() if v is not None}
            call = Signature(self, tuple(args), kwargs, chosen)
            sent = call.apply_async(link=link, link_error=link_error)
            return cast("AsyncResult[R]", sent)
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
        message = self.app._new_message(self.name, args, kwargs, options)
        try:
            return self.app.send_message(message)
        except TypeError as exc:
            raise self._unencodable(args, kwargs) or exc from None

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

    # -- workflows (forkq.canvas) ------------------------------------------------------------

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A call to make later, or a step of a workflow: a step before it gives its result
        as the first argument, before these."""
        return Signature(self, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable call: given no result of a step before it."""
        return Signature(self, args, kwargs, immutable=True)

    def signature(
        self,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Signature:
        """`s()` with options (queue, countdown, eta, priority, expires, task_id, headers,
        immutable), as Celery's `task.signature(args, kwargs, **options)`."""
        return Signature(self, args, kwargs, options)

    def starmap(self, argument_lists: Iterable[Iterable[Any]]) -> Signature:
        """One message that calls the task once per argument tuple, in a worker's child, and
        returns the list of values (built-in task forkq.starmap)."""
        calls = [list(args) for args in argument_lists]
        for args in calls:
            self._check(tuple(args), {})
        options = {"queue": self.options.queue, "priority": self.options.priority}
        return Signature(STARMAP_TASK, (self.name, calls), None, options, app=self.app)

    def chunks(self, argument_lists: Iterable[Iterable[Any]], n: int) -> group:
        """The calls in chunks of `n`, a group of `starmap`s: its GroupResult's value is a
        list of lists."""
        if n < 1:
            raise ConfigurationError(f"task {self.name}: chunks of {n} calls; give n >= 1")
        calls = [tuple(args) for args in argument_lists]
        parts = [self.starmap(calls[i : i + n]) for i in range(0, len(calls), n)]
        return group(parts, app=self.app)

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
