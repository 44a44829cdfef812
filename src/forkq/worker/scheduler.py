"""The periodic scheduler: inside every worker (a process its master forks and keeps running,
`SchedulerProgram`) and standalone (`forkq scheduler`). Every instance tries for one lease in
the broker; the one that holds it leads, and fires what is due.

    every lease_ttl / 3: hold the lease ─► just became leader? read where each schedule is
                         (its record; a new schedule starts now, recorded without a fire)
    leading, at each due time: the due times since the newest handled ─► catch-up policy ─►
                         ScheduleStore.fire, one Fire per due time, task id uuid5(name, due):
                         the store enqueues each at most once, whoever sends it
    then sleep until the next due time or the next look at the lease (TERM interrupts it);
    leaving: give the lease up, so that another scheduler takes it at its next look

No fixed tick: an idle leader wakes at the due time itself. What it finds late (after a
downtime or a change of leader) its schedule's catch-up policy decides (`forkq.schedule`).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone

from setproctitle import setproctitle

from forkq import logs
from forkq.app import Forkq
from forkq.engines.contract import Fire, ScheduleStore, outgoing, schedule_store
from forkq.exceptions import BackendError, BrokerError
from forkq.outage import Outage
from forkq.pool.child import Stopping, StopSignal
from forkq.schedule import MAX_CATCH_UP, Schedule, fire_id

log = logging.getLogger("forkq.scheduler")

#: Headers of a fire's message: the schedule's name, and its due time (Unix seconds).
SCHEDULE_HEADER, DUE_HEADER = "forkq-schedule", "forkq-due"


def lease_name(app: Forkq) -> str:
    """The lease the schedulers of one app elect their leader by."""
    return f"scheduler:{app.main}"


def new_holder_id() -> str:
    return f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"


def queue_of(app: Forkq, schedule: Schedule) -> str:
    """The queue a schedule's fires go to: its own, else its task's, else the app's default."""
    task = app.tasks.get(schedule.task)
    own = None if task is None else task.options.queue
    return schedule.queue or own or app.settings.default_queue


class Scheduler:
    """One scheduler instance. `run` until stopped; the verbs below are one step each."""

    def __init__(self, app: Forkq, schedules: Sequence[Schedule], holder: str) -> None:
        self.app, self.schedules, self.holder = app, tuple(schedules), holder
        self.lease = lease_name(app)
        self.ttl = app.broker.lease_ttl
        self.queues = {s.name: queue_of(app, s) for s in self.schedules}
        self.store: ScheduleStore | None = None  # opened by run(), in the process that runs
        self.leading = False
        self.held_until = 0.0  # monotonic: the lease is ours until then, unless renewed
        self.next_look = 0.0  # monotonic
        self.last: dict[str, int] = {}  # schedule -> newest due time handled (ms), leading
        self.outage = Outage("schedule store", log)
        self.pause = 0.0  # back-off after a failed step

    def run(self, stop: StopSignal) -> int:
        self.store = schedule_store(self.app.broker, self.app.backend)
        try:
            while not stop.requested:
                self.step()
                with stop.interruptible():
                    time.sleep(self.pause or self.until_next())
        except Stopping:
            pass
        finally:
            self.leave()
        return 0

    def step(self) -> None:
        """Look at the lease when due, then fire what is due if leading; an outage of the
        store is logged once and backed off, never fatal."""
        try:
            if time.monotonic() >= self.next_look:
                self.look()
            if self.leading and time.monotonic() >= self.held_until:
                self.follow("its lease ran out before it could renew it")
            if self.leading:
                self.fire_due()
        except (BrokerError, BackendError) as exc:
            self.pause = self.outage.failed(exc)
        else:
            self.outage.succeeded()
            self.pause = 0.0

    def look(self) -> None:
        """Take or renew the lease."""
        assert self.store is not None
        asked = time.monotonic()
        held = self.store.hold(self.lease, self.holder, self.ttl)
        self.next_look = asked + self.ttl / 3
        if held:
            self.held_until = asked + self.ttl
            if not self.leading:
                self.lead()
        elif self.leading:
            self.follow("another scheduler holds the lease")

    def lead(self) -> None:
        """Just became the leader: resume each schedule where its record says; a schedule
        without one starts now (recorded, not fired)."""
        assert self.store is not None
        now = _now_ms()
        records = self.store.records(self.queues)
        starts = [Fire(s, q, now, "") for s, q in self.queues.items() if s not in records]
        if starts:
            self.store.fire(starts)
            records = self.store.records(self.queues)
        self.last = {s: records[s].due_ms if s in records else now for s in self.queues}
        self.leading = True
        log.info(
            "scheduler %s leading %s: %d schedule(s), lease %gs",
            self.holder, self.lease, len(self.schedules), self.ttl,
        )  # fmt: skip

    def follow(self, why: str) -> None:
        self.leading, self.last = False, {}
        log.warning("scheduler %s no longer leading %s: %s", self.holder, self.lease, why)

    def fire_due(self) -> None:
        """Fire every schedule's due times up to now, as its catch-up policy chooses."""
        assert self.store is not None
        now = _now_ms()
        fires: list[Fire] = []
        handled: dict[str, int] = {}
        for s in self.schedules:
            pending = s.timing.between(self.last[s.name], now, MAX_CATCH_UP)
            if not pending:
                continue
            handled[s.name] = pending[-1]
            chosen = s.catch_up.choose(pending, now)
            if len(chosen) < len(pending):
                log.warning(
                    "periodic %s: %d due time(s) missed since %s, %d fired (catch_up=%s)",
                    s.name, len(pending), _shown(pending[0]), len(chosen), s.catch_up.value,
                )  # fmt: skip
            fires += [self.fire_of(s, due) for due in chosen]
        for f, sent in zip(fires, self.store.fire(fires) if fires else [], strict=True):
            if sent:
                log.info(
                    "periodic %s due %s: sent task %s", f.schedule, _shown(f.due_ms), f.task_id
                )
        self.last.update(handled)

    def fire_of(self, s: Schedule, due_ms: int) -> Fire:
        """The message of a schedule's fire at `due_ms`: its task id comes from both."""
        task = self.app.tasks.get(s.task)
        own = None if task is None else task.options
        priority = s.priority if s.priority is not None else (own.priority if own else 0)
        expires = s.expires if s.expires is not None else (own.expires if own else None)
        task_id = fire_id(s.name, due_ms)
        headers = {SCHEDULE_HEADER: s.name, DUE_HEADER: f"{due_ms / 1000:.3f}"}
        queue = self.queues[s.name]
        message = self.app.new_message(
            s.task, s.args, s.kwargs, queue=queue, priority=priority, expires=expires,
            task_id=task_id, headers=headers,
        )  # fmt: skip
        body = self.app.codec.encode(message)
        return Fire(s.name, queue, due_ms, task_id, outgoing(queue, body, priority))

    def until_next(self) -> float:
        """Seconds to sleep: to the next due time when leading, else to the next look."""
        wake = self.next_look - time.monotonic()
        if self.leading:
            dues = [s.timing.after(self.last[s.name]) for s in self.schedules]
            due = min((d for d in dues if d is not None), default=None)
            if due is not None:
                wake = min(wake, (due - time.time() * 1000) / 1000)
        return max(0.0, wake)

    def leave(self) -> None:
        """Give the lease up (best effort: it expires anyway)."""
        if self.store is not None and self.leading:
            try:
                self.store.release(self.lease, self.holder)
            except (BrokerError, BackendError) as exc:
                log.warning("scheduler %s could not give its lease up: %s", self.holder, exc)
            else:
                log.info("scheduler %s gave up %s", self.holder, self.lease)
        self.leading = False


class SchedulerProgram:
    """The scheduler as a worker's companion process (`pool/companion.py`): it forks from the
    master after the schedules are read and frozen, and opens connections of its own."""

    label = "scheduler"

    def __init__(self, app: Forkq, schedules: Sequence[Schedule], worker_id: str) -> None:
        self.app, self.schedules, self.worker_id = app, tuple(schedules), worker_id

    def run_companion(self, stop: StopSignal) -> int:
        self.app.drop_inherited_connections()
        holder = f"{self.worker_id}/scheduler/{os.getpid()}"
        try:
            return Scheduler(self.app, self.schedules, holder).run(stop)
        finally:
            self.app.close()


def run_scheduler(app: Forkq, loglevel: str, log_json: bool, logfile: str | None) -> int:
    """`forkq scheduler`: this process is one scheduler, until TERM or INT."""
    logs.configure_master(loglevel, log_json, logfile, os.getpid())
    setproctitle(f"forkq: {app.main} scheduler")
    stop = StopSignal()  # TERM: leave at once if waiting, after the step under way if not
    signal.signal(signal.SIGINT, signal.getsignal(signal.SIGTERM))
    holder = f"{new_holder_id()}/scheduler"
    log.info("scheduler %s of app %s: %d schedule(s)", holder, app.main, len(app.schedules))
    try:
        return Scheduler(app, tuple(app.schedules.values()), holder).run(stop)
    finally:
        app.close()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _shown(due_ms: int) -> str:
    moment = datetime.fromtimestamp(due_ms // 1000, timezone.utc)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{due_ms % 1000:03d} UTC"
