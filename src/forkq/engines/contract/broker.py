"""The broker interface: a small set of verbs with acknowledgement built in.

A broker moves opaque message bytes between publishers and named consumers with
at-least-once delivery: a fetched message is *held* by its consumer until the consumer acks,
requeues or dead-letters it. If the consumer dies, `release` (called by its supervisor) or
lease expiry (when the whole worker is gone) makes the message available again.

Engines translate their driver's errors into `BrokerError` at this edge.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Sequence
from urllib.parse import parse_qs, urlsplit

import msgspec

from forkq.engines.contract.results import ResultBackend, ResultWrite
from forkq.exceptions import ConfigurationError
from forkq.settings import redacted


class Consumer(msgspec.Struct, frozen=True):
    """Who holds fetched messages: one per child process incarnation."""

    worker: str  # the worker (master process) whose heartbeat keeps the holds alive
    name: str  # unique across every worker sharing the broker


class Delivery(msgspec.Struct, frozen=True):
    """A fetched message. `receipt` is the engine's handle for ack/requeue/dead_letter.

    `delivery_count` counts the times a process started handling it, this time included.
    `returned` marks a message that came back from a holder that vanished without saying
    whether it had started it (RabbitMQ redelivers what a dropped connection held): its count
    takes that lost delivery as a start, and the executor counts the starts of returned
    deliveries in the result backend (`ResultBackend.count_start`), so a message that keeps
    coming back without ever being started is not charged for it."""

    receipt: str
    queue: str
    body: bytes
    delivery_count: int
    returned: bool = False


class DeadLetter(msgspec.Struct, frozen=True):
    receipt: str
    queue: str
    body: bytes
    reason: str
    failed_at: float
    priority: int = 0


class DeadLetterCaps(msgspec.Struct, frozen=True):
    """How many dead letters each queue keeps, and for how long (settings `dead_letter_max`
    and `dead_letter_ttl`). Enforced where a letter is added: the oldest go first. 0: no cap."""

    max_count: int = 10_000
    max_age: float = 7 * 86_400.0  # seconds

    @property
    def max_age_ms(self) -> int:
        return int(self.max_age * 1000)


DEFAULT_DEAD_CAPS = DeadLetterCaps()


class Sighting(msgspec.Struct, frozen=True):
    """A worker seen consuming a queue: its id and its latest heartbeat (Unix time)."""

    worker: str
    seen_at: float


SIGHTINGS_KEPT = 86_400.0  # seconds a worker's sighting outlives its last heartbeat


class Broker(abc.ABC):
    """One connection to a broker. Not shared across processes: open one after fork."""

    url: str = ""

    #: Seconds a worker's holds outlive its last heartbeat; workers beat every third of it.
    lease_ttl: float = 30.0
    #: How the holds of a dead worker come back: "lease" (they expire after lease_ttl without
    #: heartbeats) or "connection" (the server redelivers when the holder's connection drops).
    recovers_by: str = "lease"
    #: Whether priority 0-9 orders delivery (RabbitMQ quorum queues before 3.12: no).
    has_priorities: bool = True
    #: The dead letters a queue keeps.
    dead_caps: DeadLetterCaps = DEFAULT_DEAD_CAPS
    #: Whether `dead_caps` hold per queue (RabbitMQ keeps one dead-letter queue per prefix,
    #: which the caps bound as a whole: it cannot count letters by a header).
    dead_caps_per_queue: bool = True

    @abc.abstractmethod
    def publish(self, queue: str, body: bytes, *, priority: int = 0, delay: float = 0.0) -> None:
        """Store a message; it becomes visible after `delay` seconds. Priority 0-9, 9 first."""

    def publish_many(self, items: Sequence[tuple[str, bytes, int, float]]) -> None:
        """Publish (queue, body, priority, delay) tuples; engines batch them in one round trip."""
        for queue, body, priority, delay in items:
            self.publish(queue, body, priority=priority, delay=delay)

    @abc.abstractmethod
    def fetch(
        self, consumer: Consumer, queues: Sequence[str], limit: int, timeout: float
    ) -> list[Delivery]:
        """Hold and return up to `limit` visible messages, waiting up to `timeout` seconds
        (blocking, not spinning) when none is there. Highest priority first, then oldest."""

    @abc.abstractmethod
    def ack(self, consumer: Consumer, delivery: Delivery) -> None:
        """The message is done: delete it."""

    def finish(
        self,
        consumer: Consumer,
        delivery: Delivery,
        result: ResultWrite | None,
        backend: ResultBackend,
    ) -> None:
        """Store the task's result (when there is one to keep), then ack: in this order, so
        that a crash in between runs the task again rather than losing its result. Engines
        that share a server with the backend do both in one round trip. An engine may keep the
        ack back and send it with this process's next call on the broker (Redis sends the acks
        of a fetched batch with the next fetch), but always before a release or close; until
        then `kept_acks` lists it."""
        if result is not None:
            backend.store(result.task_id, result.state, result.payload, result.ttl)
        self.ack(consumer, delivery)

    @abc.abstractmethod
    def requeue(self, consumer: Consumer, delivery: Delivery, delay: float = 0.0) -> None:
        """Give the message back, visible again after `delay` seconds, not counted as run."""

    @abc.abstractmethod
    def dead_letter(self, consumer: Consumer, delivery: Delivery, reason: str) -> None:
        """Move the message to its queue's dead letters with the reason; the queue's oldest
        letters beyond `dead_caps` go (RabbitMQ: the caps are on its one dead-letter queue)."""

    def kept_acks(self) -> list[tuple[str, str]]:
        """(queue, receipt) of each message this process finished but has not acked yet."""
        return []

    @abc.abstractmethod
    def release(
        self,
        consumer_name: str,
        running: Collection[str] = (),
        finished: Collection[tuple[str, str]] = (),
    ) -> int:
        """Make everything `consumer_name` holds available again at once; return how many.

        Messages whose receipt is in `running` had started, so their delivery count stands;
        the others were only prefetched and are not counted as run. `finished` lists what the
        consumer had finished without acking (its `kept_acks`, read from the scoreboard after
        it died): those are acked, not released."""

    def stop_fetching(self, consumer: Consumer) -> None:  # noqa: B027 - most engines pull
        """`consumer` will not fetch again (its child takes no more work): engines that push
        messages to consumers stop now, before its last ack frees room for another."""

    @abc.abstractmethod
    def heartbeat(self, worker: str, queues: Sequence[str] = ()) -> None:
        """Keep `worker`'s holds for `lease_ttl` more seconds. Holds of a worker that stops
        beating expire and any consumer may fetch those messages again. Also records that
        `worker` consumes `queues` now, for `consumers_seen` (kept a day at least)."""

    @abc.abstractmethod
    def consumers_seen(self, queue: str, within: float) -> list[Sighting]:
        """The workers whose heartbeat said, in the last `within` seconds, that they consume
        `queue`: each once, with its latest beat, latest first."""

    @abc.abstractmethod
    def purge(self, queue: str) -> int:
        """Delete every message of `queue` that is not held; return how many."""

    @abc.abstractmethod
    def size(self, queue: str) -> int:
        """Messages in `queue`, held or not, due or delayed."""

    @abc.abstractmethod
    def dead_letters(self, queue: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """The oldest dead letters, of one queue or of all."""

    @abc.abstractmethod
    def requeue_dead(self, receipts: Collection[str] | None = None) -> int:
        """Publish dead letters back to their queues (all when `receipts` is None)."""

    @abc.abstractmethod
    def purge_dead(self, queue: str | None = None) -> int:
        """Delete dead letters, of one queue or of all."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close this process's connection."""

    def abandon(self) -> None:  # noqa: B027 - a no-op is right for engines without sessions
        """Called in a forked child on a connection the parent opened: let go of it without
        touching the parent's session (no close handshake, no flush)."""


# 9999-12-31T23:59:59Z, the last moment Python's datetime can show: a stored time past it (or
# not a number) is junk that no engine keeps waiting for.
LAST_MOMENT = 253402300799.0

MAX_DELAY = 100 * 365.25 * 86400  # seconds: the longest delay every engine holds (about 100 y)


def check_delay(delay: float) -> None:
    """A delay every engine can hold: a number no greater than MAX_DELAY (a past time is due)."""
    if not delay <= MAX_DELAY:  # NaN fails the comparison too
        raise ConfigurationError(
            f"a delay of {delay:g} s cannot be scheduled: at most {MAX_DELAY:g} s (100 years)"
        )


def check_fetch_args(queues: Sequence[str], limit: int) -> None:
    if not queues or limit < 1:
        raise ValueError("fetch needs at least one queue and a limit >= 1")


DEFAULT_LEASE_TTL = 30.0
MAX_LEASE_TTL = 86400.0  # a day: a lease is renewed every third of it


def lease_ttl_from_url(url: str) -> float:
    """The `?lease_ttl=SECONDS` URL parameter every engine accepts (default 30)."""
    raw = parse_qs(urlsplit(url).query).get("lease_ttl", [str(DEFAULT_LEASE_TTL)])[-1]
    try:
        ttl = float(raw)
    except ValueError:
        shown = redacted(url)
        raise ConfigurationError(f"lease_ttl in {shown!r} must be a number of seconds") from None
    if not 0 < ttl <= MAX_LEASE_TTL:  # NaN and infinity fail too
        raise ConfigurationError(
            f"lease_ttl in {redacted(url)!r} must be > 0 and at most {MAX_LEASE_TTL:g} seconds"
        )
    return ttl
