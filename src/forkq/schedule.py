"""Periodic schedules: what each one calls, when it is due, and which due times a look fires.

    @app.periodic(...), app.add_periodic(...) ─► Schedule (checked now: ConfigurationError)
    the leading scheduler, at `now`:
        newest due time handled (the store's record) ─► Timing.between(last, now) ─► pending
        pending ─► CatchUp.choose(pending, now) ─► the due times to fire, each with its
                   task id fire_id(name, due): uuid5, the same in every scheduler

Due times are integer milliseconds since the epoch, so that every scheduler computes the same
ones and so the same ids. `every=N` is due at the multiples of N seconds since the epoch
(`every=3600`: on the hour, UTC); `cron=` at the moments the `cronsim` library gives for the
expression in its time zone, DST included (see `Cron`). Nothing here reads a setting.
"""

from __future__ import annotations

import enum
import functools
import math
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, tzinfo
from itertools import takewhile
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from cronsim import CronSim, CronSimError

from forkq.exceptions import ConfigurationError

#: `catch_up="all"` fires at most this many missed due times of one schedule, the newest.
MAX_CATCH_UP = 1000
#: A due time found later than this (ms) counts as missed: its catch-up policy decides.
LATE_AFTER_MS = 2000
#: The namespace of fire ids: uuid5(FIRES, "<schedule>\n<due ms>").
FIRES = uuid.UUID("5b1f6c9e-2d55-4a4c-9f31-7d0e8a2c4b6f")


def fire_id(schedule: str, due_ms: int) -> str:
    """The task id of a schedule's fire at a due time: the same in every scheduler."""
    return str(uuid.uuid5(FIRES, f"{schedule}\n{due_ms}"))


class CatchUp(enum.Enum):
    """What a look does with due times it finds more than LATE_AFTER_MS late (missed, after a
    downtime or a change of leader); due times found in time always fire."""

    ONE = "one"  # one fire for all the missed ones: the newest, unless one in time fires
    ALL = "all"  # every missed due time, the newest MAX_CATCH_UP of them
    NONE = "none"  # none: on to the next

    def choose(self, pending: list[int], now_ms: int) -> list[int]:
        """The due times of `pending` (oldest first) to fire at `now_ms`."""
        missed = [due for due in pending if now_ms - due > LATE_AFTER_MS]
        in_time = pending[len(missed) :]
        if self is CatchUp.ALL:
            return pending
        if self is CatchUp.ONE:
            return in_time or missed[-1:]
        return in_time


class Every(msgspec.Struct, frozen=True):
    """Due at every multiple of `period_ms` since the epoch."""

    period_ms: int

    def after(self, moment_ms: int) -> int | None:
        """The first due time strictly after `moment_ms`."""
        return (moment_ms // self.period_ms + 1) * self.period_ms

    def between(self, after_ms: int, upto_ms: int, limit: int) -> list[int]:
        """The newest `limit` due times in (after_ms, upto_ms], oldest first."""
        first, last = after_ms // self.period_ms + 1, upto_ms // self.period_ms
        first = max(first, last - limit + 1)
        return [k * self.period_ms for k in range(first, last + 1)]

    def __str__(self) -> str:
        return f"every {self.period_ms / 1000:g}s"


class Cron(msgspec.Struct, frozen=True):
    """A five-field cron expression read by `cronsim`, in the time zone `tz` (an IANA name).

    DST, as Debian's cron (which cronsim follows): a job at a fixed time of day, or less often
    than hourly, whose local time does not exist on the day clocks go forward (02:30 in
    Europe/Paris) runs when the gap ends (03:00), once; on the day clocks go back, a local time
    that happens twice runs at the first. Jobs that run more often than hourly follow the
    clock: none in the gap, each of the two repeated hours (they are different moments)."""

    expression: str
    tz: str = "UTC"

    def after(self, moment_ms: int) -> int | None:
        """The first due time strictly after `moment_ms` (None: none in the next 50 years)."""
        return next(self._forward(moment_ms), None)

    def between(self, after_ms: int, upto_ms: int, limit: int) -> list[int]:
        """The newest `limit` due times in (after_ms, upto_ms], oldest first. Always read
        forwards (cronsim's backward reading can differ where a zone moves by 30 minutes);
        backwards only to find where to start when more than `limit` are due."""
        found: list[int] = []
        for due in self._forward(after_ms):
            if due > upto_ms:
                return found
            found.append(due)
            if len(found) > limit:
                break
        start = after_ms
        for count, due in enumerate(self._backward(upto_ms), 1):
            if count > limit:
                start = due
                break
        return list(takewhile(lambda due: due <= upto_ms, self._forward(start)))[-limit:]

    def _forward(self, moment_ms: int) -> Iterator[int]:
        start = datetime.fromtimestamp(moment_ms // 1000, _zone(self.tz))
        return (int(moment.timestamp()) * 1000 for moment in CronSim(self.expression, start))

    def _backward(self, upto_ms: int) -> Iterator[int]:
        """Due times at or before `upto_ms`, newest first (cronsim reads back from a whole
        second, strictly before it)."""
        start = datetime.fromtimestamp(upto_ms // 1000 + 1, _zone(self.tz))
        return (int(m.timestamp()) * 1000 for m in CronSim(self.expression, start, reverse=True))

    def __str__(self) -> str:
        return f"cron {self.expression} {self.tz}"


Timing = Every | Cron


class Schedule(msgspec.Struct, frozen=True):
    """One periodic call: task `task` with `args` and `kwargs`, due as `timing` says. `queue`,
    `priority` and `expires` (seconds after the fire) override the task's own when set."""

    name: str
    task: str
    timing: Timing
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    catch_up: CatchUp = CatchUp.ONE
    queue: str | None = None
    priority: int | None = None
    expires: float | None = None


def define(
    name: str,
    task: str,
    *,
    cron: str | None,
    every: float | timedelta | None,
    tz: str | None,
    catch_up: str,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    expires: float | None = None,
) -> Schedule:
    """A schedule, checked: each bad argument is a one-line ConfigurationError naming it."""
    where = f"periodic {name}"
    if (cron is None) == (every is None):
        raise ConfigurationError(f"{where}: give cron= (a cron expression) or every= (seconds)")
    timing: Timing
    if every is not None:
        if tz is not None:
            raise ConfigurationError(f"{where}: tz= applies to cron= only; every= counts seconds")
        timing = Every(_period_ms(where, every))
    else:
        timing = _cron(where, cron or "", tz or "UTC")
    if priority is not None and not (isinstance(priority, int) and 0 <= priority <= 9):
        raise ConfigurationError(f"{where}: priority must be 0-9, not {priority!r}")
    if expires is not None and not (_is_number(expires) and 0 < expires < math.inf):
        raise ConfigurationError(f"{where}: expires must be seconds > 0, not {expires!r}")
    try:  # every fire sends them: one JSON cannot hold would fail each, long after this
        msgspec.json.encode([list(args), kwargs or {}])
    except (TypeError, ValueError, msgspec.EncodeError) as exc:
        raise ConfigurationError(f"{where}: arguments JSON cannot hold: {exc}") from None
    return Schedule(
        name, task, timing, tuple(args), dict(kwargs or {}), _catch_up(where, catch_up),
        queue, priority, None if expires is None else float(expires),
    )  # fmt: skip


def _period_ms(where: str, every: object) -> int:
    seconds = every.total_seconds() if isinstance(every, timedelta) else every
    if not (_is_number(seconds) and 0 < seconds < math.inf):  # type: ignore[operator]
        raise ConfigurationError(f"{where}: every must be a number of seconds > 0, not {every!r}")
    period = round(float(seconds) * 1000)  # type: ignore[arg-type]
    if period < 1:
        raise ConfigurationError(f"{where}: every must be at least 0.001 seconds, not {every!r}")
    return period


def _cron(where: str, expression: str, tz: str) -> Cron:
    if not isinstance(expression, str):
        raise ConfigurationError(f"{where}: cron must be a string, not {expression!r}")
    try:
        zone = _zone(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigurationError(
            f"{where}: unknown time zone tz={tz!r}: give an IANA name such as 'Europe/Paris' "
            "or 'UTC'"
        ) from None
    try:
        first = next(CronSim(expression, datetime.now(zone)), None)
    except CronSimError as exc:
        raise ConfigurationError(
            f"{where}: bad cron expression {expression!r}: {exc} (five fields: minute hour "
            "day-of-month month day-of-week)"
        ) from None
    if first is None:
        raise ConfigurationError(f"{where}: cron {expression!r} is never due in the next 50 years")
    return Cron(expression, tz)


def _catch_up(where: str, value: str) -> CatchUp:
    try:
        return CatchUp(value)
    except ValueError:
        choices = ", ".join(repr(c.value) for c in CatchUp)
        raise ConfigurationError(f"{where}: catch_up must be {choices}, not {value!r}") from None


@functools.cache
def _zone(name: str) -> tzinfo:
    return ZoneInfo(name)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
