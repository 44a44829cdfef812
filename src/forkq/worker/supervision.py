"""The master's half of a worker: what a dead child held, and the heartbeat that keeps what
the living ones hold theirs.

    child exit ─► its last scoreboard slot ─► Leftovers ─► Broker.release (engines that can)
                  running: back counted │ finished, ack kept: acked │ killed for its hard
                  time limit: FAILURE stored (every engine), dead-lettered (by the release)
    tick       ─► heartbeat (with the queues consumed) ─► retry releases an outage held up

Where the engine recovers by connection (RabbitMQ: `Capabilities.releases_others` is False),
the server gives back what the child's connection held when it closed, and nothing is
released here: the message of a task killed for its time limit comes back as a returned
delivery, which the executor dead-letters on reading the FAILURE stored here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from forkq.app import Forkq
from forkq.engines.contract import Burial, Consumer, Leftovers
from forkq.exceptions import BackendError, BrokerError, TimeLimitExceeded
from forkq.outage import Outage
from forkq.pool.bulletin import Bulletin
from forkq.pool.exits import ChildExit
from forkq.pool.scoreboard import SlotState, SlotView
from forkq.pool.watch import Ending
from forkq.result import encode_record, failure_record

log = logging.getLogger("forkq.worker")


class WorkerSupervision:
    """Runs in the master, on its own broker connection."""

    def __init__(
        self,
        app: Forkq,
        worker_id: str,
        queues: Sequence[str] = (),
        bulletin: Bulletin | None = None,  # where control posts the queues consumed now
    ) -> None:
        self.app = app
        self.worker_id = worker_id
        self._queues = tuple(queues)
        self._bulletin = bulletin
        self.outage = Outage("broker (from the master)", log)
        self.unreleased: list[ChildExit] = []  # exits whose release failed: retried each tick

    def child_exited(self, exit: ChildExit) -> None:
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
        if not self.app.broker.capabilities.releases_others:
            return  # the server gives back what the child's connection held
        consumer = Consumer.of_child(self.worker_id, exit.index, exit.pid)
        released = self.app.broker.release(consumer, Leftovers(running, seen.unacked, dead))
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

    @property
    def queues(self) -> tuple[str, ...]:
        """Said with every heartbeat (`Broker.consumers_seen`): the worker's, or the set
        control posted since."""
        posted = self._bulletin.posted.queues if self._bulletin is not None else ()
        return posted or self._queues

    def tick(self) -> None:
        """Heartbeat, and retry releases that failed during an outage."""
        try:
            self.app.broker.heartbeat(self.worker_id, self.queues)
            while self.unreleased:
                self._settle(self.unreleased[0])
                self.unreleased.pop(0)
        except (BrokerError, BackendError) as exc:
            self.outage.failed(exc)
        else:
            self.outage.succeeded()


def _what_ran(seen: SlotView) -> str:
    if seen.task_id:
        return f"; {seen.task_name}[{seen.task_id}] was running"
    return f"; it was reading message {seen.receipt}"
