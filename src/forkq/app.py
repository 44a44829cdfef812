"""The application: settings, the task registry, publishing, and its connections; the rest of
its API is mixed in (periodic.py, fork_hooks.py, steering.py, handles.py)."""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import datetime
from typing import Any, Literal, ParamSpec, TypeVar, cast, overload

import msgspec

from forkq.canvas.builtins import BUILTINS
from forkq.config_object import settings_from_object
from forkq.control import Control
from forkq.eager import backend_url as eager_backend_url
from forkq.eager import run_eagerly
from forkq.engines.contract import (
    Broker,
    DeadLetterCaps,
    Outgoing,
    ResultBackend,
    outgoing,
)
from forkq.engines.registry import open_backend, open_broker
from forkq.envelope import Codec, Message, Unique
from forkq.exceptions import ConfigurationError
from forkq.failures import TypeKey, type_key
from forkq.fork_hooks import AfterForkHook, ForkHooks, Hook
from forkq.handles import Handles
from forkq.periodic import PeriodicTasks
from forkq.result import AsyncResult
from forkq.schedule import Schedule
from forkq.sending import CallOptions
from forkq.sent_events import SentEvents
from forkq.settings import Settings, load_settings
from forkq.steering import Steering
from forkq.task import AsyncTask, BoundTaskDecorator, Task, TaskDecorator
from forkq.task_modules import import_discovered, import_included
from forkq.task_options import TaskOptions

E = TypeVar("E", bound=type[Exception])
P = ParamSpec("P")
R = TypeVar("R")


class Forkq(PeriodicTasks, ForkHooks, Steering, Handles):
    """`app = Forkq("proj")`; broker and results default to the SQLite file ./forkq.sqlite3.

    FORKQ_BROKER_URL and FORKQ_RESULT_BACKEND (read now, not at import) override the default;
    explicit `broker=` / `backend=` arguments override both.
    """

    def __init__(
        self,
        main: str | None = None,
        *,
        broker: str | None = None,
        backend: str | None = None,
        include: Iterable[str] = (),
        **settings: Any,
    ) -> None:
        self.main = main or "__main__"
        self.include: list[str] = _names(include)
        self.autodiscover_packages: list[tuple[str, str]] = []  # (package, module name)
        self.settings: Settings = load_settings(
            broker_url=broker, result_backend=backend, **settings
        )
        self.codec = Codec(secret=self.settings.secret, max_bytes=self.settings.max_message_bytes)
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.builtin_tasks: dict[str, Task[Any, Any]] = {  # forkq.collect, forkq.starmap
            name: Task(self, fn, TaskOptions.build(name, options)) for name, fn, options in BUILTINS
        }
        self.safe_exceptions: dict[TypeKey, type[Exception]] = {}  # see register_exception
        self.before_fork_hooks: list[Hook] = []  # see on_before_fork, on_after_fork
        self.after_fork_hooks: list[AfterForkHook] = []
        self.schedules: dict[str, Schedule] = {}  # by name: see periodic, add_periodic
        self._owner_pid = -1  # the process that opened _broker/_backend
        self._broker: Broker | None = None
        self._backend: ResultBackend | None = None
        self.sent_events = SentEvents()  # events_sent: one add_events per publish call
        self._control: Control | None = None

    @property
    def _app(self) -> Forkq:
        """What the mixins forward on their app's behalf (steering.py, handles.py)."""
        return self

    def __repr__(self) -> str:
        return f"<Forkq {self.main} broker={self.settings.broker_url}>"

    # -- tasks -------------------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> AsyncTask[P, R]: ...
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(
        self, fn: None = None, /, *, bind: Literal[True], **options: Any
    ) -> BoundTaskDecorator: ...
    @overload
    def task(
        self, fn: None = None, /, *, bind: Literal[False] = False, **options: Any
    ) -> TaskDecorator: ...
    @overload
    def task(
        self, fn: None = None, /, *, bind: bool, **options: Any
    ) -> Callable[[Callable[..., Any]], Task[..., Any]]: ...

    def task(
        self, fn: Callable[..., Any] | None = None, /, **options: Any
    ) -> Task[Any, Any] | TaskDecorator | BoundTaskDecorator | Callable[..., Task[..., Any]]:
        """Register a task: `@app.task` or `@app.task(name=..., queue=..., bind=True, ...)`.

        An unknown option raises `ConfigurationError` naming the task and the options there are.
        """

        def register(func: Callable[..., Any]) -> Task[Any, Any]:
            given = dict(options)
            name = given.pop("name", None) or self._default_name(func)
            kind = AsyncTask if inspect.iscoroutinefunction(func) else Task
            task: Task[Any, Any] = kind(self, func, TaskOptions.build(name, given))
            self.tasks[name] = task
            return task

        return register(fn) if fn is not None else cast(TaskDecorator, register)

    def _task_of(self, fn: Callable[..., Any]) -> Task[Any, Any]:
        task: Task[Any, Any] = self.task(fn)
        return task

    def register_exception(self, cls: E) -> E:
        """Let `get()` raise a failure of this task error type as an instance of it too (a
        subclass of both it and `TaskFailed`); usable as a class decorator. The type is
        matched by module and qualified name, so the worker's type must be the same one."""
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            raise ConfigurationError(f"register_exception takes an Exception subclass, not {cls!r}")
        self.safe_exceptions[type_key(cls)] = cls
        return cls

    def _default_name(self, func: Callable[..., Any]) -> str:
        module = func.__module__
        return f"{self.main if module == '__main__' else module}.{func.__name__}"

    def autodiscover_tasks(
        self, packages: Iterable[str], related_name: str = "tasks", *, force: bool = False
    ) -> None:
        """Have `<package>.<related_name>` of each package imported with the `include`
        modules (now, with `force`); a package without such a module is skipped."""
        found = [(package, related_name) for package in _names(packages)]
        self.autodiscover_packages.extend(found)
        if force:
            import_discovered(found)

    def import_task_modules(self) -> None:
        """Import the modules named by `include=` and `autodiscover_tasks` (the worker does
        when it loads the app; a client that runs tasks by name needs none of them)."""
        import_included(self.include)
        import_discovered(self.autodiscover_packages)

    # -- publishing --------------------------------------------------------------------------

    def send_task(
        self,
        name: str,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | float | None = None,
        expires: datetime | float | None = None,
        queue: str | None = None,
        priority: int = 0,
        task_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> AsyncResult[Any]:
        """Enqueue a task by name; it need not be registered in this process.

        `eta` is a moment (aware datetime or Unix time); `expires` is a moment or, as a
        number, seconds from now, after which the task is not run."""
        message = self.new_message(
            name,
            args,
            kwargs,
            countdown=countdown,
            eta=eta,
            expires=expires,
            queue=queue,
            priority=priority,
            task_id=task_id,
            headers=headers,
        )
        return self.send_message(message)

    def new_message(
        self,
        name: str,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | float | None = None,
        expires: datetime | float | None = None,
        queue: str | None = None,
        priority: int = 0,
        task_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Message:
        """The message `send_task` would send with these arguments."""
        options = CallOptions(
            countdown=countdown,
            eta=eta,
            expires=expires,
            queue=queue,
            priority=priority,
            task_id=task_id,
            headers=headers,
        )
        return self._new_message(name, args, {} if kwargs is None else kwargs, options)

    def _new_message(
        self,
        name: str,
        args: Iterable[Any],
        kwargs: dict[str, Any],
        options: CallOptions,
        unique: Unique | None = None,
    ) -> Message:
        """The message of a call of task `name` sent with `options` (a task's calls come
        here with theirs), holding the lock `unique` if it is a unique task's."""
        return options.message(name, args, kwargs, self.settings.default_queue, unique)

    def send_message(self, message: Message) -> AsyncResult[Any]:
        """Publish the message: the handle on its result."""
        self.publish(message)
        return AsyncResult(message.id, self, name=message.task, queue=message.queue)

    def send_unique(self, message: Message, ttl: float) -> AsyncResult[Any]:
        """Publish a unique task's message unless its lock (`message.unique`) is held: then
        the holder's handle (forkq/unique.py). A publish that fails lets go of the lock it
        took. In eager mode the task runs at once: nothing to lock."""
        unique = message.unique
        if unique is None or self.settings.eager:
            return self.send_message(message)
        holder = self.backend.lock(unique.key, message.id, ttl)
        if holder is not None:
            return AsyncResult(holder, self, name=message.task, queue=message.queue)
        try:
            return self.send_message(message)
        except BaseException:
            self.backend.unlock(unique.key, message.id)
            raise

    def publish(self, message: Message) -> None:
        """Send the message; in eager mode, run its task here and now (eager.py)."""
        sent = self.to_outgoing(message, time.time())
        if self.settings.eager:
            run_eagerly(self, sent.body)
        else:
            self.broker.publish((sent,))
            if self.settings.events_sent:
                self.sent_events.sent(self.settings, lambda: self.backend, (message,))

    def publish_many(self, messages: Sequence[Message]) -> list[AsyncResult[Any]]:
        """Send the messages in as few broker round trips as it takes; each is due when its
        `eta` says, as with `publish`."""
        now = time.time()
        items = [self.to_outgoing(m, now) for m in messages]
        if self.settings.eager:
            for item in items:
                run_eagerly(self, item.body)
        else:
            self.broker.publish(items)
            if self.settings.events_sent:
                self.sent_events.sent(self.settings, lambda: self.backend, messages)
        return [AsyncResult(m.id, self, name=m.task, queue=m.queue) for m in messages]

    def to_outgoing(self, message: Message, now: float) -> Outgoing:
        """The message encoded for the broker, due `eta - now` seconds from now (`outgoing`
        refuses a delay no engine can hold)."""
        delay = 0.0 if message.eta is None else message.eta - now
        return outgoing(message.queue, self.codec.encode(message), message.priority, delay)

    # -- connections: one per process, never inherited across fork ---------------------------

    @property
    def broker(self) -> Broker:
        self.drop_inherited_connections()
        if self._broker is None:
            caps = DeadLetterCaps(self.settings.dead_letter_max, self.settings.dead_letter_ttl)
            self._broker = open_broker(self.settings.broker_url, caps)
        return self._broker

    @property
    def backend(self) -> ResultBackend:
        self.drop_inherited_connections()
        if self._backend is None:
            eager = self.settings.eager  # results stay in this process: no server needed
            self._backend = open_backend(
                eager_backend_url(self) if eager else self.settings.backend_url
            )
        return self._backend

    def drop_inherited_connections(self) -> None:
        """After fork: let go of connections another process opened (without closing them
        under it); the next use of `broker`/`backend` opens this process's own."""
        pid = os.getpid()
        if pid == self._owner_pid:
            return
        for conn in (self._broker, self._backend):
            if conn is not None:
                conn.abandon()
        self._broker = self._backend = None
        self._owner_pid = pid

    def configure(self, **overrides: Any) -> None:
        """Replace settings (e.g. `broker_url` from the command line); reopens connections.
        `None` values are skipped."""
        given = {k: v for k, v in overrides.items() if v is not None}
        self.use_settings(self.settings.replaced(**given))

    def use_settings(self, settings: Settings) -> None:
        """Use these settings from now on (connections reopen): to put back earlier ones."""
        self.close()
        self.settings = settings
        self.codec = Codec(secret=settings.secret, max_bytes=settings.max_message_bytes)

    def config_from_object(self, source: object, *, namespace: str | None = None) -> None:
        """Settings from a module, class, object or mapping, or the dotted name of one
        (`"proj.settings"`, `"proj.settings:Config"`): forkq's names or Celery's lowercase
        ones (`task_default_queue`, `result_expires`, ...). They count as explicit: they win
        over the environment and earlier arguments. An unknown name is an error; see
        `forkq.config_object` for the Celery settings forkq ignores or refuses."""
        fields = [f.name for f in msgspec.structs.fields(Settings)]
        self.configure(**settings_from_object(source, fields, namespace))

    def close(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        self.sent_events.close()
        if self._owner_pid == os.getpid():
            for conn in (self._broker, self._backend):
                if conn is not None:
                    conn.close()
        self._broker = self._backend = None


def _names(names: Iterable[str]) -> list[str]:
    """A list of module names; one name given as a string is one name, not its letters."""
    return [names] if isinstance(names, str) else list(names)
