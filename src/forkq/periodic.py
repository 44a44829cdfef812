"""The periodic half of the app's API: `@app.periodic(...)` and `app.add_periodic(...)`,
which define schedules (forkq/schedule.py) that the scheduler process fires."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

from forkq.exceptions import ConfigurationError
from forkq.schedule import Schedule, define
from forkq.task import Task

P = ParamSpec("P")
R = TypeVar("R")
TaskT = TypeVar("TaskT", bound=Task[Any, Any])
# What add_periodic schedules: a task or a task's name, alone or with (args, kwargs).
PeriodicCall = Task[Any, Any] | str | tuple[Task[Any, Any] | str, Sequence[Any], dict[str, Any]]


class PeriodicDecorator(Protocol):
    """What `@app.periodic(...)` returns: the task it is given, or the task it makes."""

    @overload
    def __call__(self, fn: TaskT, /) -> TaskT: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class PeriodicTasks:
    """Mixed into `Forkq`: its schedules, by name."""

    schedules: dict[str, Schedule]

    def _task_of(self, fn: Callable[..., Any]) -> Task[Any, Any]:
        """The task made of a plain function (`Forkq.task`)."""
        raise NotImplementedError

    def periodic(
        self,
        *,
        cron: str | None = None,
        every: float | timedelta | None = None,
        tz: str | None = None,
        name: str | None = None,
        catch_up: str = "one",
    ) -> PeriodicDecorator:
        """Run a task on a schedule, with no arguments: `@app.periodic(every=30)` or
        `@app.periodic(cron="*/5 * * * *", tz="Europe/Paris")` over `@app.task` (over a plain
        function, it registers the task too). See `add_periodic`."""

        def schedule(target: Callable[..., Any]) -> Task[Any, Any]:
            task = target if isinstance(target, Task) else self._task_of(target)
            self.add_periodic(task, cron=cron, every=every, tz=tz, name=name, catch_up=catch_up)
            return task

        return cast(PeriodicDecorator, schedule)

    def add_periodic(
        self,
        call: PeriodicCall,
        *,
        cron: str | None = None,
        every: float | timedelta | None = None,
        tz: str | None = None,
        name: str | None = None,
        catch_up: str = "one",
        queue: str | None = None,
        priority: int | None = None,
        expires: float | None = None,
    ) -> Schedule:
        """Schedule a call: a task (or a task's name) alone, or `(task, args, kwargs)`.

        `cron=` (five fields, in `tz`, an IANA zone, UTC by default) or `every=` seconds (due
        at each multiple since the epoch). `name` (default: the task's) must be unique.
        `catch_up`: what to do with due times missed while no scheduler ran: "one" fire for
        them all, "all" of them (the newest 1,000), or "none". `queue`, `priority` and
        `expires` (seconds after the fire) override the task's own. Every argument is checked
        now: a bad one raises `ConfigurationError` naming it."""
        task, args, kwargs = self._periodic_call(call)
        schedule = define(
            name or task, task, cron=cron, every=every, tz=tz, catch_up=catch_up, args=args,
            kwargs=kwargs, queue=queue, priority=priority, expires=expires,
        )  # fmt: skip
        known = self.schedules.get(schedule.name)
        if known is not None and known != schedule:
            raise ConfigurationError(
                f"periodic {schedule.name}: a schedule of that name exists already "
                f"({known.task}, {known.timing}); give this one another name="
            )
        self.schedules[schedule.name] = schedule
        return schedule

    def _periodic_call(self, call: PeriodicCall) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        """The task's name and arguments of what `add_periodic` was given."""
        target, args, kwargs = call if isinstance(call, tuple) else (call, (), {})
        if isinstance(target, Task):
            return target.name, tuple(args), dict(kwargs)
        if isinstance(target, str):
            return target, tuple(args), dict(kwargs)
        raise ConfigurationError(
            f"periodic: schedule a task, a task's name or (task, args, kwargs), not {target!r}"
        )
