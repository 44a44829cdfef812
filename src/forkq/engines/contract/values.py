"""The values that cross the engine contract, and the checks every engine applies to them.

publisher ─ Outgoing ─► Broker.publish
consumer  ◄─ Delivery ─ ConsumerSession.fetch ─► finish / requeue / dead_letter (by receipt)
          ─ Effects (writes, publishes, a ChordVote) ─► finish, done before the ack
master    ─ Leftovers ─► Broker.release (what a dead child held, read from its slot)
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from urllib.parse import parse_qs, urlsplit

import msgspec

from forkq.exceptions import ConfigurationError
from forkq.settings import redacted


class Consumer(msgspec.Struct, frozen=True):
    """Who holds fetched messages: one per child process incarnation. `name` is unique across
    every worker sharing the broker and starts with the worker's id and a `/`."""

    worker: str  # the worker (master process) whose heartbeat keeps the holds alive
    name: str

    @classmethod
    def of_child(cls, worker: str, index: int, pid: int) -> Consumer:
        return cls(worker, f"{worker}/{index}/{pid}")

    @staticmethod
    def worker_of(name: str) -> str:
        """The worker id a consumer name starts with (engines that store only the name)."""
        return name.split("/", 1)[0]


class Delivery(msgspec.Struct, frozen=True):
    """A fetched message. `receipt` is the engine's handle for settling it, a string so that
    a child's scoreboard slot can name it to the master.

    `delivery_count` counts the times a process started handling it, this time included.
    `returned` marks a message that came back from a holder that vanished without saying
    whether it had started it (RabbitMQ redelivers what a dropped connection held): its count
    takes that lost delivery as a start, and the executor counts the starts of returned
    deliveries in the result backend (`ResultBackend.count_start`), so a message that keeps
    coming back without ever being started is not charged for it.

    `held_since`: this process's monotonic time when its consumer asked for the message
    (`ConsumerSession.fetch` stamps it; 0, never stamped, counts as held for ever). The
    broker's hold began after it, so a hold younger than a lease by this clock is younger on
    the server too (`ConsumerSession.still_holds`)."""

    receipt: str
    queue: str
    body: bytes
    delivery_count: int
    returned: bool = False
    held_since: float = 0.0


MIN_PRIORITY, MAX_PRIORITY = 0, 9


def clamp_priority(priority: int) -> int:
    """Priority 0-9, 9 first: the one place a priority is brought into range."""
    priority = int(priority)
    if priority < MIN_PRIORITY:
        return MIN_PRIORITY
    return MAX_PRIORITY if priority > MAX_PRIORITY else priority


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


class Outgoing(msgspec.Struct, frozen=True):
    """A message to publish: visible `delay` seconds from now. Build it with `outgoing()`,
    which brings what a caller gives into range; one built directly must be in range already
    (priority 0-9, delay 0 to MAX_DELAY), or it is refused here rather than stored as junk."""

    queue: str
    body: bytes
    priority: int = 0
    delay: float = 0.0

    def __post_init__(self) -> None:
        if not (MIN_PRIORITY <= self.priority <= MAX_PRIORITY and 0.0 <= self.delay <= MAX_DELAY):
            raise ValueError(f"priority {self.priority} or delay {self.delay} out of range")


#: Sends messages to a broker (`Broker.publish`, handed to what publishes through it).
Publish = Callable[[Sequence[Outgoing]], None]


def outgoing(queue: str, body: bytes, priority: int = 0, delay: float = 0.0) -> Outgoing:
    """The message to publish: the priority clamped to 0-9, a past time due now, a delay no
    engine can hold refused (`ConfigurationError`)."""
    check_delay(delay)
    return Outgoing(queue, body, clamp_priority(priority), max(0.0, delay))


class Fence(msgspec.Struct, frozen=True):
    """Which run of a task writes its record (`ResultBackend.store`). `sending`: one sending
    of the task id, the same for every delivery and retry of it (the worker's digest of the
    message's id, creation time and origin), so that the id sent again starts afresh;
    `attempt` (`attempt_of`): higher for every newer run of that sending."""

    sending: str
    attempt: int


class ResultWrite(msgspec.Struct, frozen=True):
    """A result waiting to be stored, handed to `ConsumerSession.finish` with the
    ack it goes with. `fence`: the run that writes it (`ResultBackend.store`); None for a
    write that is no run's own."""

    task_id: str
    state: str
    payload: bytes
    ttl: float
    fence: Fence | None = None


def fenced_off(kept: Fence | None, run: Fence | None) -> bool:
    """Whether a write by `run` is refused on a record whose fence is `kept`: a run of the
    same sending with a lower attempt (`ResultBackend.store`; the memory engine runs this,
    store.lua and SQLite's `_STORE_FENCED` mirror it)."""
    if run is None or kept is None:
        return False
    return kept.sending == run.sending and run.attempt < kept.attempt


_TRIES_FENCED = 2**21  # later tries fence as this one: attempts stay exact in a double
_STARTS_FENCED = 2**31  # more starts than any engine counts (RabbitMQ's header: 2**31 - 1)


def attempt_of(retries: int, delivery_count: int) -> int:
    """A worker's run of a task as one number that grows with every newer run of its id: the
    try (`Message.retries`) first, then the starts of that try's message (`delivery_count`,
    which every engine raises when it gives a message held by one consumer to another). The
    first run of a task is 1. Exact in Redis's Lua numbers (doubles)."""
    tries = min(max(retries, 0), _TRIES_FENCED)
    return tries * _STARTS_FENCED + min(max(delivery_count, 1), _STARTS_FENCED - 1)


class ChordVote(msgspec.Struct, frozen=True):
    """A chord header member's outcome, counted under the chord's id by the member's task id,
    so that a member redelivered and run again is counted once.

    A success adds the member; the vote that brings the count to `size` *fires*. A failure
    fires if it is the chord's first failure. Firing publishes `then` (the body on a success,
    the error callbacks on a failure) exactly once: a vote that fired and is cast again (its
    message redelivered before the publish was marked done) fires again, any other does not.
    The count and its state outlive the last vote by `ttl` seconds."""

    chord: str  # the chord's id
    member: str  # the member's task id
    size: int  # how many members the chord has
    failed: bool  # this member failed: the chord fails, and `then` are its error callbacks
    then: tuple[Outgoing, ...]  # published once, when this vote fires
    ttl: float


class Effects(msgspec.Struct, frozen=True):
    """What finishing a message leads to besides its own result, done before its ack (so a
    crash redoes them rather than losing them): more result writes (the failure of workflow
    steps that will now never run), messages to publish (a retry's next try, a chain's next
    step, callbacks), and a chord vote. Every effect is keyed by a task id, so doing it again
    after a redelivery writes the same record, publishes a message with the same task id, or
    counts the same member once."""

    writes: tuple[ResultWrite, ...] = ()
    publish: tuple[Outgoing, ...] = ()
    vote: ChordVote | None = None


class Burial(msgspec.Struct, frozen=True):
    """A held message that goes to the dead letters rather than back to its queue."""

    queue: str
    receipt: str
    reason: str


class Leftovers(msgspec.Struct, frozen=True):
    """What a consumer that is gone (a dead child) left held, as its scoreboard slot said.
    Everything else it held was prefetched and goes back uncounted."""

    running: tuple[str, ...] = ()  # receipts it had started: back, counted as run
    finished: tuple[tuple[str, str], ...] = ()  # (queue, receipt) finished, ack kept: acked
    dead: tuple[Burial, ...] = ()  # dead-lettered (a task killed for its hard time limit)


class DeadLetter(msgspec.Struct, frozen=True):
    receipt: str
    queue: str
    body: bytes
    reason: str
    failed_at: float
    priority: int = 0


class Delayed(msgspec.Struct, frozen=True):
    """A message waiting in its queue until it is due (`Broker.delayed`)."""

    queue: str
    body: bytes
    due_at: float  # Unix time
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


class Recovery(enum.Enum):
    """How the holds of a consumer that is gone come back."""

    #: Its worker's master releases them at once (`Broker.release`); those of a whole dead
    #: worker expire lease_ttl after its last heartbeat.
    LEASE = "lease"
    #: The server redelivers what a connection held when it closes: no other process can
    #: release them, and the redelivery is a returned delivery (`Delivery.returned`).
    CONNECTION = "connection"


class Capabilities(msgspec.Struct, frozen=True):
    """What an engine can do, declared, so that the worker acts on it rather than on a call
    that silently does nothing."""

    recovery: Recovery
    #: Whether priority 0-9 orders delivery (RabbitMQ quorum queues before 3.12: no).
    priorities: bool = True
    #: Whether a finish without a result keeps its ack back to send with the next call.
    keeps_acks: bool = False
    #: Whether `dead_caps` hold per queue (RabbitMQ keeps one dead-letter queue per prefix,
    #: which the caps bound as a whole: it cannot count letters by a header).
    dead_caps_per_queue: bool = True
    #: Whether `Broker.size` counts delayed messages (RabbitMQ holds them in shared queues).
    counts_delayed: bool = True
    #: Whether `Broker.depth` counts the due messages by priority band (`QueueDepth.bands`;
    #: RabbitMQ orders by priority inside one queue and counts it whole).
    counts_bands: bool = True
    #: Whether other processes see its messages (memory://: only the process that opened it).
    across_processes: bool = True

    @property
    def releases_others(self) -> bool:
        """Whether `Broker.release` can free what another process's consumer held."""
        return self.recovery is Recovery.LEASE


PRIORITY_BANDS = ("0-2", "3-5", "6-8", "9")  # the priorities each band holds, lowest first


def priority_band(priority: int) -> int:
    """The band (index into PRIORITY_BANDS) of a priority; out-of-range ones are clamped."""
    return min(len(PRIORITY_BANDS) - 1, max(0, int(priority)) // 3)


class QueueDepth(msgspec.Struct, frozen=True):
    """What a queue holds (`Broker.depth`)."""

    messages: int  # as `Broker.size` counts them: delayed ones too where `counts_delayed`
    delayed: int | None  # those not due yet; None where the engine cannot count them
    # The messages not delayed (held ones included), by priority band, lowest band first;
    # None where the engine cannot count them (RabbitMQ orders by priority inside one queue).
    bands: tuple[int, ...] | None = None


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
