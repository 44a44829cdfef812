"""What the periodic schedules of an app look like now, as the broker records them: each
schedule's next due time and its last fire, and the scheduler that leads. `forkq periodic
list` prints it; the dashboard's Schedules page shows it.

    app.schedules ─┐
    schedule store ─ records(name: queue) ─► the newest due time recorded and its fire
                   ─ leader(lease)        ─► who leads, until when
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from forkq.engines.contract import FireRecord, Lease, schedule_store
from forkq.schedule import Schedule
from forkq.worker.scheduler import lease_name, queue_of

if TYPE_CHECKING:
    from forkq.app import Forkq


class ScheduleNow(msgspec.Struct, frozen=True):
    """A schedule, when it is next due, and its last fire (Unix times; None: never)."""

    schedule: Schedule
    next_due: float | None
    last_due: float | None = None
    last_fired_at: float | None = None
    last_task_id: str = ""


class SchedulesNow(msgspec.Struct, frozen=True):
    schedules: list[ScheduleNow]  # by name
    leader: Lease | None


def schedules_now(app: Forkq, now: float) -> SchedulesNow:
    """One read of the app's schedule store (none when the app has no schedules)."""
    schedules = sorted(app.schedules.values(), key=lambda s: s.name)
    if not schedules:
        return SchedulesNow([], None)
    store = schedule_store(app.broker, app.backend)
    records = store.records({s.name: queue_of(app, s) for s in schedules})
    rows = [schedule_now(s, records.get(s.name), now) for s in schedules]
    return SchedulesNow(rows, store.leader(lease_name(app)))


def schedule_now(s: Schedule, record: FireRecord | None, now: float) -> ScheduleNow:
    """The next due time after now (or after the newest recorded, if that is later); a
    record without a task id is only where the schedule started from, not a fire."""
    due = s.timing.after(max(int(now * 1000), record.due_ms if record else 0))
    next_due = None if due is None else due / 1000
    if record is None or not record.task_id:
        return ScheduleNow(s, next_due)
    return ScheduleNow(s, next_due, record.due_ms / 1000, record.fired_at_ms / 1000, record.task_id)
