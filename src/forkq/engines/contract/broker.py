"""The broker: publishing, the consumers it opens, and administering queues.

A broker moves opaque message bytes between publishers and named consumers with
at-least-once delivery: a fetched message is *held* by its consumer until the consumer
settles it (`ConsumerSession`). If the consumer dies, `release` (called by its supervisor,
where the engine can) or the engine's own recovery (`Capabilities.recovery`) makes the
message available again.

Engines translate their driver's errors into `BrokerError` at this edge, `BrokerUnavailable`
for a connection problem.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Sequence
from contextlib import suppress

from forkq.engines.contract.control import ControlChannel
from forkq.engines.contract.results import ResultBackend
from forkq.engines.contract.schedules import ScheduleStore
from forkq.engines.contract.session import ConsumerSession
from forkq.engines.contract.values import (
    DEFAULT_DEAD_CAPS,
    Capabilities,
    Consumer,
    DeadLetter,
    DeadLetterCaps,
    Delayed,
    Leftovers,
    Outgoing,
    QueueDepth,
    Sighting,
)
from forkq.exceptions import BrokerError


class Broker(abc.ABC):
    """One connection to a broker. Not shared across processes: open one after fork."""

    capabilities: Capabilities
    #: Seconds a worker's holds outlive its last heartbeat; workers beat every third of it.
    lease_ttl: float = 30.0
    #: The dead letters a queue keeps.
    dead_caps: DeadLetterCaps = DEFAULT_DEAD_CAPS

    def __init__(self) -> None:
        self._sessions: dict[str, ConsumerSession] = {}

    @abc.abstractmethod
    def publish(self, messages: Sequence[Outgoing]) -> None:
        """Store the messages (build each with `outgoing()`); engines send them in as few
        round trips as they can. Returns once the broker has them all."""

    def consumer(self, consumer: Consumer, results: ResultBackend) -> ConsumerSession:
        """The session through which `consumer` fetches and settles messages, storing results
        in `results`; one per consumer, closed with this broker."""
        session = self._sessions.get(consumer.name)
        if session is None:
            session = self._sessions[consumer.name] = self._open_session(consumer, results)
            session.publish_through(self.publish)
        elif session.results is not results:
            raise ValueError(f"consumer {consumer.name!r} has a session with another backend")
        return session

    @abc.abstractmethod
    def _open_session(self, consumer: Consumer, results: ResultBackend) -> ConsumerSession:
        """The engine's session for `consumer`."""

    def release(self, consumer: Consumer, leftovers: Leftovers | None = None) -> int:
        """Make everything `consumer`, another process's consumer that is gone, held available
        again at once; return how many messages went back. Its running messages go back
        counted, its finished ones are acked, its dead ones dead-lettered, the rest (only
        prefetched) go back uncounted. Only where `capabilities.releases_others`; elsewhere
        the server's own recovery brings them back, and this raises `BrokerError`."""
        if not self.capabilities.releases_others:
            raise BrokerError(
                f"this broker cannot release another process's messages "
                f"(recovery by {self.capabilities.recovery.value})"
            )
        own = self._sessions.get(consumer.name)
        if own is not None:  # a consumer of this process: what it finished is never given back
            own.flush()
        return self._release(consumer, leftovers or Leftovers())

    def _release(self, consumer: Consumer, leftovers: Leftovers) -> int:
        raise NotImplementedError  # engines whose capabilities say they release others

    @abc.abstractmethod
    def heartbeat(self, worker: str, queues: Sequence[str] = ()) -> None:
        """`worker` is alive: its holds stay held for `lease_ttl` more seconds (engines that
        recover by connection keep this process's connection answered), and it consumes
        `queues` now, as `consumers_seen` says for a day at least."""

    @abc.abstractmethod
    def consumers_seen(self, queue: str, within: float) -> list[Sighting]:
        """The workers whose heartbeat said, in the last `within` seconds, that they consume
        `queue`: each once, with its latest beat, latest first."""

    def purge(self, queue: str) -> int:
        """Delete every message of `queue` that is not held; return how many. This process's
        sessions send their kept acks first."""
        self.flush_sessions()
        return self._purge(queue)

    @abc.abstractmethod
    def _purge(self, queue: str) -> int: ...

    def size(self, queue: str) -> int:
        """Messages in `queue`, held or not, due or (if `capabilities.counts_delayed`)
        delayed. This process's sessions send their kept acks first."""
        self.flush_sessions()
        return self._size(queue)

    @abc.abstractmethod
    def _size(self, queue: str) -> int: ...

    def depth(self, queue: str) -> QueueDepth:
        """`size`'s count, and how many messages of `queue` wait for their due time where
        the engine can count them; in one round trip. This process's sessions send their
        kept acks first."""
        self.flush_sessions()
        return self._depth(queue)

    def _depth(self, queue: str) -> QueueDepth:
        """Engines that can count delayed messages say how many (RabbitMQ cannot: they wait
        in delay queues shared by every queue of the prefix)."""
        return QueueDepth(self._size(queue), None)

    @abc.abstractmethod
    def dead_letters(self, queue: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """The oldest dead letters, of one queue or of all."""

    @abc.abstractmethod
    def requeue_dead(self, receipts: Collection[str] | None = None) -> int:
        """Publish dead letters back to their queues (all when `receipts` is None)."""

    @abc.abstractmethod
    def delete_dead(self, receipts: Collection[str]) -> int:
        """Delete the dead letters these receipts name; return how many there were. A receipt
        that names no letter (gone, or not of this engine's form) is passed over."""

    @abc.abstractmethod
    def purge_dead(self, queue: str | None = None) -> int:
        """Delete dead letters, of one queue or of all. Add each letter through one place
        that then drops the queue's oldest beyond `dead_caps`."""

    def schedule_store(self) -> ScheduleStore | None:
        """Where periodic schedules keep their lease and records, each fire recorded and
        enqueued at once (`contract/schedules.py`); None: in the result backend instead."""
        return None

    def delayed(self, queue: str, limit: int = 100) -> list[Delayed] | None:
        """The delayed messages of `queue` (a countdown or eta not reached yet), soonest
        first, up to `limit`; None where the engine cannot list them in one cheap read
        (`forkq inspect scheduled` then says so)."""
        return None

    def control_channel(self, secret: str | None) -> ControlChannel | None:
        """A new control channel on this broker's server (`contract/control.py`), signing and
        checking with `secret`; the caller closes it. None: this engine carries no control
        (its workers are reached on their host, through their control sockets)."""
        return None

    def server_warnings(self) -> list[str]:
        """Settings of the broker's server that could lose or duplicate messages, each a
        sentence for the worker to log at start (Redis: an evicting maxmemory-policy); none
        when there are none, or when the engine cannot read them."""
        return []

    def flush_sessions(self) -> None:
        """Every session of this process sends its kept acks."""
        for session in self._sessions.values():
            session.flush()

    def close(self) -> None:
        """Close this process's sessions (their kept acks go first) and its connection."""
        for session in self._sessions.values():
            with suppress(BrokerError):
                session.close()
        self._sessions.clear()
        self._close()

    @abc.abstractmethod
    def _close(self) -> None:
        """Close the connection."""

    def abandon(self) -> None:
        """Called in a forked child on a connection the parent opened: let go of it without
        touching the parent's session (no close handshake, no flush)."""
        self._sessions = {}
        self._abandon()

    def _abandon(self) -> None:  # noqa: B027 - a no-op is right for engines without sessions
        """Drop the parent's connection unsaid."""
