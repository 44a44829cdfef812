"""The result backend interface: task states and results stored by task id, with a TTL.

Backends store an opaque encoded record next to its state; `forkq.result` owns the encoding.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import msgspec

from forkq.engines.contract.events import EventPage
from forkq.engines.contract.limits import BACKOFF, RESERVATION_KEPT, Backoff
from forkq.engines.contract.revocations import Revocations
from forkq.engines.contract.schedules import ScheduleStore
from forkq.engines.contract.values import ChordVote, Fence, Publish, ResultWrite


class StoredResult(msgspec.Struct, frozen=True):
    state: str
    payload: bytes


class ResultBackend(abc.ABC):
    """One connection to a result store. Not shared across processes: open one after fork."""

    @abc.abstractmethod
    def store(
        self, task_id: str, state: str, payload: bytes, ttl: float, fence: Fence | None = None
    ) -> None:
        """Record the task's latest state; readable for `ttl` seconds.

        Fenced by the run that writes it (`Fence`): a write is refused, nothing of it written,
        where the record was written by a run of the same sending with a higher attempt. So a
        worker cut off past its lease while it ran the task, whose write lands after the worker
        that took the task over stored its own, overwrites nothing. The record keeps the fence
        of its last run past a first (a first run's write, most of them, keeps the one it
        found). A write without a fence (a verdict from outside the runs: the master's, a
        rejection's, a workflow's on another task) is always written and forgets the record's
        fence, so that a dead letter requeued runs afresh. `forget` forgets it too."""

    def store_all(self, writes: Sequence[ResultWrite]) -> None:
        """Store each write (`store`), in one round trip or transaction where the engine can."""
        for w in writes:
            self.store(w.task_id, w.state, w.payload, w.ttl, w.fence)

    @abc.abstractmethod
    def get(self, task_id: str) -> StoredResult | None:
        """The latest record, or None if there is none (or it expired)."""

    def get_many(self, task_ids: Sequence[str]) -> list[StoredResult | None]:
        """`get` of each id, in order, in one round trip or query where the engine can."""
        return [self.get(task_id) for task_id in task_ids]

    @abc.abstractmethod
    def vote(self, writes: Sequence[ResultWrite], vote: ChordVote) -> bool:
        """Store `writes` and count `vote` (see `ChordVote`) in one round trip or transaction:
        whether the vote fires and its `then` messages are not yet published. The caller then
        publishes them and calls `fired`, before acking the member's message."""

    @abc.abstractmethod
    def fired(self, vote: ChordVote) -> None:
        """The fired vote's `then` messages are published: casting it again no longer fires."""

    @abc.abstractmethod
    def wait(self, task_id: str, timeout: float) -> StoredResult | None:
        """Block (without spinning) until the task is in a ready state or `timeout` passes;
        return the latest record either way."""

    @abc.abstractmethod
    def forget(self, task_id: str) -> None:
        """Delete the task's record."""

    @abc.abstractmethod
    def count_start(self, key: str, ttl: float) -> int:
        """Count one more start of the message `key` (a digest of its bytes) and return how
        many were counted, this one included; the count is forgotten `ttl` seconds after its
        last start. Only messages whose broker cannot tell whether an earlier delivery started
        are counted here (see `Delivery.returned`), so it costs nothing on the usual path."""

    @abc.abstractmethod
    def forget_starts(self, key: str) -> None:
        """Delete the count of `key`: the message is done with."""

    def schedule_store(self, publish: Publish) -> ScheduleStore | None:
        """Where periodic schedules keep their lease and records when the broker cannot
        (RabbitMQ): each fire recorded here, then sent with `publish`. None: nowhere."""
        return None

    @abc.abstractmethod
    def lock(self, key: str, holder: str, ttl: float) -> str | None:
        """Take the lock `key` for `holder` (a task id) for `ttl` seconds unless another holds
        it: None when taken (or `holder` held it already), else the task id that holds it."""

    @abc.abstractmethod
    def unlock(self, key: str, holder: str) -> None:
        """Let go of the lock `key` if `holder` holds it (another holder's is left alone)."""

    # Revoked task ids (forkq/engines/contract/revocations.py has the rules).

    @abc.abstractmethod
    def revoke(self, task_ids: Sequence[str], ttl: float) -> None:
        """Revoke `task_ids` for `ttl` seconds, in one round trip or transaction: each gets
        the next number of the revocations' sequence (an id revoked again: a new number and
        expiry). Expired revocations go, and the oldest beyond `REVOKED_MAX`. Bad ids or ttl:
        ValueError (`check_revocation`), before anything is written."""

    @abc.abstractmethod
    def revocations(self, since: int = 0) -> Revocations:
        """The revocations numbered after `since` that have not expired, oldest first, and
        the sequence's latest number (the cursor for the next call), read consistently: none
        numbered up to that cursor is left out. `since=0`: every one."""

    # Events (forkq/engines/contract/events.py has the rules).

    @abc.abstractmethod
    def add_events(self, bodies: Sequence[bytes], kept: int) -> None:
        """Append `bodies` in order, in one round trip or transaction, then let the oldest
        go until about `kept` remain."""

    @abc.abstractmethod
    def read_events(self, after: str | None, limit: int) -> EventPage:
        """At most `limit` events added after offset `after` (None: from the oldest kept),
        oldest first. A malformed `after` or limit: ValueError."""

    @abc.abstractmethod
    def last_event_offset(self) -> str | None:
        """The newest event's offset; None while the store holds none."""

    # Rate and concurrency limits (forkq/engines/contract/limits.py has the rules). A bucket
    # is a task's name and a key ("" for the task's one bucket); a holder is a task id.

    @abc.abstractmethod
    def take_rate(
        self, task: str, key: str, interval: float, holder: str, keep: float = RESERVATION_KEPT
    ) -> float:
        """Take a start slot of `task`'s bucket `key`, one per `interval` seconds (or the
        interval `set_rate_override` set for `task`), for `holder`, in one round trip or
        transaction: 0 to start now, else the seconds to wait, a slot being reserved for
        `holder` then, kept `keep` seconds past it (`limits.decide_rate`)."""

    @abc.abstractmethod
    def set_rate_override(self, task: str, interval: float | None) -> None:
        """Make `interval` the one `take_rate` uses for `task`, whatever its caller says,
        until set again; None: the caller's again."""

    @abc.abstractmethod
    def rate_override(self, task: str) -> float | None:
        """The interval `set_rate_override` set for `task`, if any."""

    @abc.abstractmethod
    def take_slot(
        self,
        task: str,
        key: str,
        holder: str,
        limit: int,
        lease: float,
        backoff: Backoff = BACKOFF,
    ) -> float:
        """Take one of the `limit` slots of `task`'s bucket `key` for `holder`, for `lease`
        seconds, in one round trip or transaction: 0 when taken (or `holder` held one: its
        lease starts again), else the holder's next back-off in seconds (`Backoff`)."""

    @abc.abstractmethod
    def release_slot(self, task: str, key: str, holder: str) -> None:
        """Let go of `holder`'s slot, if it holds one, and forget its back-off."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close this process's connection."""

    def abandon(self) -> None:  # noqa: B027 - a no-op is right for engines without sessions
        """Called in a forked child on a connection the parent opened: let go of it without
        touching the parent's session."""
