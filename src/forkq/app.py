"""The application: settings, the task registry, publishing, and the fork hooks."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar, overload

import msgspec

from forkq.backends import ResultBackend, open_backend
from forkq.brokers import Broker, open_broker
from forkq.brokers.base import check_delay
from forkq.envelope import Codec, Message, make_message
from forkq.result import AsyncResult
from forkq.settings import Settings, load_settings
from forkq.task import Task, TaskOptions, due_delay, to_timestamp
from forkq.task_modules import import_discovered, import_included

Hook = Callable[[], None]
H = TypeVar("H", bound=Hook)


class Forkq:
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
        self.tasks: dict[str, Task] = {}
        self.before_fork_hooks: list[Hook] = []
        self.after_fork_hooks: list[Hook] = []
        self._owner_pid = -1  # the process that opened _broker/_backend
        self._broker: Broker | None = None
        self._backend: ResultBackend | None = None

    def __repr__(self) -> str:
        return f"<Forkq {self.main} broker={self.settings.broker_url}>"

    # -- tasks -------------------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[..., Any], /) -> Task: ...
    @overload
    def task(self, fn: None = None, /, **options: Any) -> Callable[[Callable[..., Any]], Task]: ...

    def task(
        self, fn: Callable[..., Any] | None = None, /, **options: Any
    ) -> Task | Callable[[Callable[..., Any]], Task]:
        """Register a task: `@app.task` or `@app.task(name=..., queue=..., bind=True, ...)`."""

        def register(func: Callable[..., Any]) -> Task:
            name = options.pop("name", None) or self._default_name(func)
            task = Task(self, func, TaskOptions(name=name, **options))
            self.tasks[name] = task
            return task

        return register(fn) if fn is not None else register

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
    ) -> AsyncResult:
        """Enqueue a task by name; it need not be registered in this process.

        `eta` is a moment (aware datetime or Unix time); `expires` is a moment or, as a
        number, seconds from now, after which the task is not run."""
        if isinstance(expires, (int, float)):
            expires = time.time() + expires
        message = make_message(
            name,
            list(args),
            dict(kwargs or {}),
            queue=queue or self.settings.default_queue,
            task_id=task_id,
            eta=None
            if eta is None and countdown is None
            else time.time() + due_delay(countdown, eta),
            expires=to_timestamp(expires),
            priority=priority,
            headers=headers,
        )
        self.publish(message)
        return AsyncResult(message.id, self)

    def publish(self, message: Message) -> None:
        delay = 0.0 if message.eta is None else message.eta - time.time()
        check_delay(delay)
        body = self.codec.encode(message)
        self.broker.publish(message.queue, body, priority=message.priority, delay=max(0.0, delay))

    def publish_many(self, messages: Sequence[Message]) -> list[AsyncResult]:
        items = [(m.queue, self.codec.encode(m), m.priority, 0.0) for m in messages]
        self.broker.publish_many(items)
        return [AsyncResult(m.id, self) for m in messages]

    def AsyncResult(self, task_id: str) -> AsyncResult:
        return AsyncResult(task_id, self)

    # -- connections: one per process, never inherited across fork ---------------------------

    @property
    def broker(self) -> Broker:
        self.drop_inherited_connections()
        if self._broker is None:
            self._broker = open_broker(self.settings.broker_url)
        return self._broker

    @property
    def backend(self) -> ResultBackend:
        self.drop_inherited_connections()
        if self._backend is None:
            self._backend = open_backend(self.settings.backend_url)
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
        """Replace settings (e.g. `broker_url` from the command line); reopens connections."""
        self.close()
        self.settings = msgspec.structs.replace(
            self.settings, **{k: v for k, v in overrides.items() if v is not None}
        )
        self.codec = Codec(secret=self.settings.secret, max_bytes=self.settings.max_message_bytes)

    def close(self) -> None:
        if self._owner_pid == os.getpid():
            for conn in (self._broker, self._backend):
                if conn is not None:
                    conn.close()
        self._broker = self._backend = None

    # -- fork hooks --------------------------------------------------------------------------

    def on_before_fork(self, fn: H) -> H:
        """Run `fn()` in the worker's master once the app is loaded, before any child forks:
        the place to preload data children will share copy-on-write."""
        self.before_fork_hooks.append(fn)
        return fn

    def on_after_fork(self, fn: H) -> H:
        """Run `fn()` in every child right after fork: the place to open DB engines and clients."""
        self.after_fork_hooks.append(fn)
        return fn


def _names(names: Iterable[str]) -> list[str]:
    """A list of module names; one name given as a string is one name, not its letters."""
    return [names] if isinstance(names, str) else list(names)
