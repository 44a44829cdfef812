"""The master's half of a worker: what a dead child held, and the heartbeat that keeps what
the living ones hold theirs.

    child ending (a time limit, a terminate) ─► its FAILURE or REVOKED stored, then the signal
    child exit ─► its last scoreboard slot ─► Leftovers ─► Broker.release (engines that can)
                  running: back counted │ finished, ack kept: acked │ killed for its hard
                  time limit: FAILURE stored (every engine), dead-lettered (by the release)
                  │ terminated, its task revoked: REVOKED stored (every engine), back
                  counted, for the next child to discard (executor.py)
    tick       ─► heartbeat (with the queues consumed; beats landing too far apart for the
                  lease are warned of: beats.py) ─► retry releases an outage held up
                  ─► with metrics: the queues' depths, read for the scrapes to serve
                  ─► the revoked ids the next child inherits: what changed, when it may
                     have (worker/revoked.py)
                  ─► with events (-E): the worker's heartbeat event (worker_events.py), sent
                  with the task events the master made (a task terminated or killed for its
                  time limit, when its child was reaped)

Where the engine recovers by connection (RabbitMQ: `Capabilities.releases_others` is False),
the server gives back what the child's connection held when it closed, and nothing is
released here: the message of a task killed for its time limit comes back as a returned
delivery, which the executor dead-letters on reading the FAILURE stored here.

A revoked task's message goes back rather than being acked here: the master holds only its
receipt, and the child that fetches it next discards it with all a revoked task's
consequences — its workflow failed downstream, its unique lock let go — the same way on every
engine (RabbitMQ redelivers it anyway). It goes back counted, as any message whose process
died while running it: the consumer that gets it, on any host, reads the REVOKED stored here
before anything else (it reads the record of every redelivery), so it is discarded even by a
worker that has not read the revoked ids since. The record is stored before the master
signals the child (`child_ending`: RabbitMQ gives the message back the moment the child's
connection closes, before it is reaped) and again before the release: a store that fails is
retried with the release on the next tick.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from forkq.app import Forkq
from forkq.engines.contract import Burial, Consumer, Leftovers
from forkq.events import TaskEventKind
from forkq.exceptions import BackendError, BrokerError, TimeLimitExceeded
from forkq.outage import Outage
from forkq.pool.bulletin import Bulletin
from forkq.pool.exits import ChildExit
from forkq.pool.scoreboard import SlotState, SlotView
from forkq.pool.watch import Ending, Verdict
from forkq.result import encode_record, failure_record, revoked_record
from forkq.worker.beats import BeatGaps
from forkq.worker.revoked import RevokedIds

if TYPE_CHECKING:  # imported only with --metrics-port, -E (service.py)
    from forkq.worker.metrics import WorkerMetrics
    from forkq.worker.worker_events import WorkerEvents

log = logging.getLogger("forkq.worker")

TERMINATED = "terminated while running"  # what became of a revoked task its master ended


class WorkerSupervision:
    """Runs in the master, on its own broker connection."""

    def __init__(
        self,
        app: Forkq,
        worker_id: str,
        queues: Sequence[str] = (),
        metrics: WorkerMetrics | None = None,  # --metrics-port: what the master counts
        bulletin: Bulletin | None = None,  # where control posts the queues consumed now
        revoked: RevokedIds | None = None,  # the revoked ids the children it forks inherit
        events: WorkerEvents | None = None,  # -E: the worker's events
    ) -> None:
        self.app = app
        self.events = events
        self.metrics = metrics
        self.worker_id = worker_id
        self._queues = tuple(queues)
        self._bulletin = bulletin
        self.revoked = revoked
        self.outage = Outage("broker (from the master)", log)
        self.beats: BeatGaps | None = None  # made at the first tick, with the broker
        self.unreleased: list[ChildExit] = []  # exits whose release failed: retried each tick

    def child_ending(self, verdict: Verdict, seen: SlotView) -> None:
        """The task's record, stored before the signal: where the server gives the message
        back as the child's connection closes (RabbitMQ), another consumer can fetch it before
        this child is reaped, and must read why it ended (REVOKED: discarded as terminated,
        not run again; the time limit's FAILURE: dead-lettered). Stored again when the child
        is reaped, so that one failing here is retried there."""
        if seen.state != SlotState.BUSY or seen.task_id != verdict.task_id or not seen.task_id:
            return
        try:
            if verdict.reason is Ending.REVOKED:
                self._store_revoked(seen)
            elif verdict.reason is Ending.TIME_LIMIT:
                self._fail_timed_out(seen)
        except BackendError as exc:
            log.warning("could not store why task %s ends: %s", seen.task_id, exc)

    def child_exited(self, exit: ChildExit) -> None:
        if self.metrics is not None:  # once, though a release that fails is tried again
            self.metrics.child_exited(exit)
        if self.events is not None:
            self._tell_events(exit)
        try:
            self._settle(exit)
        except (BrokerError, BackendError) as exc:
            self.outage.failed(exc)
            self.unreleased.append(exit)
        else:
            self.outage.succeeded()

    def _settle(self, exit: ChildExit) -> None:
        seen = exit.last_seen
        running = (seen.receipt,) if seen.state == SlotState.BUSY and seen.receipt else ()
        dead: tuple[Burial, ...] = ()
        if exit.reason is Ending.TIME_LIMIT and running:
            dead, running = (self._fail_timed_out(seen),), ()
        elif exit.reason is Ending.REVOKED and running:
            self._store_revoked(seen)  # back counted: its next consumer reads this first
        if not self.app.broker.capabilities.releases_others:
            return  # the server gives back what the child's connection held
        consumer = Consumer.of_child(self.worker_id, exit.index, exit.pid)
        released = self.app.broker.release(consumer, Leftovers(running, seen.unacked, dead))
        if self.metrics is not None:
            self.metrics.released(released)
            self.metrics.buried(len(dead))
        if released:
            log.warning(
                "released %d message(s) held by child %d (pid %d)%s",
                released,
                exit.index,
                exit.pid,
                _what_ran(seen) if running else "",
            )

    def _fail_timed_out(self, seen: SlotView) -> Burial:
        """The task, not the process, was at fault: its FAILURE, stored; and the verdict that
        dead-letters its message rather than running it again."""
        reason = f"hard time limit exceeded: the process running {seen.task_name} was killed"
        record = failure_record(TimeLimitExceeded.__name__, reason)
        self.app.backend.store(
            seen.task_id, record.state, encode_record(record), self.app.settings.result_ttl
        )
        return Burial(seen.queue, seen.receipt, reason)

    def _store_revoked(self, seen: SlotView) -> None:
        """The task was revoked and its process ended: its REVOKED record, now."""
        record = revoked_record(TERMINATED, seen.task_name)
        self.app.backend.store(
            seen.task_id, record.state, encode_record(record), self.app.settings.result_ttl
        )

    def _tell_events(self, exit: ChildExit) -> None:
        """The task the master ended with its child: revoked (terminated) or failed (its time
        limit). Once per exit, though a release that fails is tried again."""
        seen = exit.last_seen
        if seen.state != SlotState.BUSY or not seen.task_id or self.events is None:
            return
        if exit.reason is Ending.TIME_LIMIT:
            why = f"{TimeLimitExceeded.__name__}: hard time limit exceeded"
            self.events.task_ended(TaskEventKind.FAILED, seen, exit.index, why)
        elif exit.reason is Ending.REVOKED:
            self.events.task_ended(TaskEventKind.REVOKED, seen, exit.index, TERMINATED)

    @property
    def queues(self) -> tuple[str, ...]:
        """Said with every heartbeat (`Broker.consumers_seen`): the worker's, or the set
        control posted since."""
        posted = self._bulletin.posted.queues if self._bulletin is not None else ()
        return posted or self._queues

    def tick(self) -> None:
        """Heartbeat, retry releases that failed during an outage, read the queues' depths."""
        try:
            broker = self.app.broker
            broker.heartbeat(self.worker_id, self.queues)
            if self.beats is None:
                self.beats = BeatGaps(broker.lease_ttl, broker.capabilities.releases_others)
            self.beats.landed()
            while self.unreleased:
                self._settle(self.unreleased[0])
                self.unreleased.pop(0)
            if self.metrics is not None:
                self.metrics.read_depths(self.app.broker, self.queues)
            if self.revoked is not None:  # kept current for the next fork (it logs failures)
                self.revoked.catch_up()
        except (BrokerError, BackendError) as exc:
            self.outage.failed(exc)
            if self.metrics is not None:
                self.metrics.heard(answered=False)
        else:
            self.outage.succeeded()
            if self.metrics is not None:
                self.metrics.heard(answered=True)
        if self.events is not None:  # its own store, its own failures (counted, not raised)
            self.events.heartbeat()


def _what_ran(seen: SlotView) -> str:
    if seen.task_id:
        return f"; {seen.task_name}[{seen.task_id}] was running"
    return f"; it was reading message {seen.receipt}"
