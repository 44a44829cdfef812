"""Where periodic schedules keep their state: one leader's lease, and each schedule's last fire.

    scheduler ─ hold(lease, me, ttl) ──► leads while held (renewed every ttl / 3)
              ─ Fire(schedule, due, task id, message) ─► fire: recorded and enqueued only if
                due is newer than the schedule's record, so a fire goes out at most once
                whichever scheduler sends it, and however often
              ─ records(...) ─► the newest due time of each schedule (where a new leader
                resumes) and its last fire, for `forkq periodic list`

A broker that can do it keeps them itself (`Broker.schedule_store`), the record and the
enqueue in one round trip or transaction (`atomic`): SQLite, Redis, memory. RabbitMQ has no
such place: its result backend keeps them (`ResultBackend.schedule_store`), and a fire is
recorded first, then published through the broker (`record_then_publish`): a crash between the
two loses that fire rather than sending it twice.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import msgspec

from forkq.engines.contract.values import Outgoing, Publish
from forkq.exceptions import ConfigurationError

if TYPE_CHECKING:
    from forkq.engines.contract.broker import Broker
    from forkq.engines.contract.results import ResultBackend


class Fire(msgspec.Struct, frozen=True):
    """A schedule's due time (ms since the epoch) to enqueue as `message`, whose task id is
    `task_id`; without a message, only recorded (where a new schedule starts from)."""

    schedule: str
    queue: str  # the queue its fires go to (Redis keeps the record beside it)
    due_ms: int
    task_id: str
    message: Outgoing | None = None


class FireRecord(msgspec.Struct, frozen=True):
    """A schedule's record: the newest due time recorded, when, and its fire's task id ("":
    only a starting point, never fired)."""

    due_ms: int
    fired_at_ms: int
    task_id: str


class Lease(msgspec.Struct, frozen=True):
    """Who holds a lease, until when (Unix time, seconds)."""

    holder: str
    until: float


class ScheduleStore(abc.ABC):
    """A view over a broker's or result backend's connection: opened and closed with it."""

    #: Whether a fire's record and its message are written in one round trip or transaction.
    atomic: bool = True

    @abc.abstractmethod
    def hold(self, lease: str, holder: str, ttl: float) -> bool:
        """Take `lease` if no one holds it, or renew it if `holder` does: whether `holder`
        holds it now, for `ttl` seconds."""

    @abc.abstractmethod
    def release(self, lease: str, holder: str) -> None:
        """Give `lease` up, if `holder` holds it."""

    @abc.abstractmethod
    def leader(self, lease: str) -> Lease | None:
        """Who holds `lease` now (None: no one)."""

    @abc.abstractmethod
    def fire(self, fires: Sequence[Fire]) -> list[bool]:
        """For each fire, in order: if its due time is newer than its schedule's record (or
        there is none), record it and enqueue its message; whether it did."""

    @abc.abstractmethod
    def records(self, queues: Mapping[str, str]) -> dict[str, FireRecord]:
        """The record of each schedule named (schedule → the queue its fires go to) that has
        one."""


def record_then_publish(
    fires: Sequence[Fire],
    claim: Callable[[Fire], tuple[bool, FireRecord | None]],
    unclaim: Callable[[Fire, FireRecord | None], None],
    publish: Publish,
) -> list[bool]:
    """`fire` where the record and the broker are apart: each fire is recorded (`claim`: if
    newer; whether it was, and the record it replaced), then published. A publish that raises
    puts the record back (`unclaim`, if it is still this fire's), so the fire is tried again;
    a crash between the record and the publish loses that one fire."""
    done = []
    for f in fires:
        claimed, before = claim(f)
        if claimed and f.message is not None:
            try:
                publish([f.message])
            except BaseException:
                unclaim(f, before)
                raise
        done.append(claimed)
    return done


def schedule_store(broker: Broker, backend: ResultBackend) -> ScheduleStore:
    """The broker's own store, else its result backend's (publishing through the broker)."""
    own = broker.schedule_store()
    if own is not None:
        return own
    kept = backend.schedule_store(broker.publish)
    if kept is None:
        raise ConfigurationError(
            "periodic tasks need a broker or result backend that keeps schedules: "
            "sqlite:///, redis:// or memory://"
        )
    return kept
