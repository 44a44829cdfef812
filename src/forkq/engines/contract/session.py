"""One consumer's side of a broker: fetch, then settle each message it holds.

    fetch ─► Delivery ─► finish(result?, effects?) ─► the result stored, effects done, the ack
                     ├─► requeue(delay)      back, not counted as run
                     └─► dead_letter(reason)

Kept acks: an engine may keep back the ack of a message finished without a result to store
(`Capabilities.keeps_acks`), to send it with the consumer's next call. This class is the one
place that holds them, and every public verb hands the kept ones to the engine with its own
work, so no call can overtake an ack kept before it (a release must never give back a message
already finished). Engines implement the `_`-verbs, each of which receives the acks it must
send first or in the same round trip.

Effects (`Effects`: more writes, publishes, a chord vote) are done before the ack, so that a
crash redoes them: the result and the writes are stored (with the vote counted in the same
round trip, `ResultBackend.vote`), then the messages published (with the chord's if the vote
fired, then marked done with `ResultBackend.fired`), then the ack. A session that
`atomic_effects` does all of it in one round trip or transaction instead, so that a crash
cannot publish a fired chord's messages twice.
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar

import msgspec

from forkq.engines.contract.results import ResultBackend
from forkq.engines.contract.values import (
    Capabilities,
    Consumer,
    Delivery,
    Effects,
    Outgoing,
    Publish,
    ResultWrite,
)

T = TypeVar("T")

_UNLOCKED = nullcontext()  # holds no state: one serves every session

MAX_KEPT = 64  # acks: beyond this they are sent at once
MAX_KEPT_WAIT = 0.05  # seconds the oldest kept ack may wait before the acks are sent at once


def check_fetch_args(queues: Sequence[str], limit: int) -> None:
    if not queues or limit < 1:
        raise ValueError("fetch needs at least one queue and a limit >= 1")


class ConsumerSession(abc.ABC):
    """Made by `Broker.consumer`. Not shared across processes."""

    #: Whether a result and its ack go in one round trip (the results live on the broker's
    #: own server): decided when the session is opened, from the backend's type.
    joins_results: bool = False
    #: Whether `finish` with effects stores, publishes, counts and acks in one round trip or
    #: transaction (`_finish_atomically`): decided when the session is opened.
    atomic_effects: bool = False
    #: How long a delivery stays this consumer's beyond doubt (`still_holds`): half the
    #: lease of an engine that takes back a dead worker's holds, so that a check that passed
    #: leaves the result's write half a lease to land; inf where no live consumer loses one.
    unchallenged_for: float = math.inf

    def __init__(
        self, consumer: Consumer, results: ResultBackend, capabilities: Capabilities
    ) -> None:
        self.consumer = consumer
        self.results = results
        self.capabilities = capabilities
        self._keeps_acks = capabilities.keeps_acks
        self._kept: list[Delivery] = []
        self._kept_since = 0.0  # monotonic time of the oldest kept ack
        self._publish: Publish = _no_publisher

    def publish_through(self, publish: Publish) -> None:
        """Where effects' messages go: the broker that opened this session (`Broker.consumer`)."""
        self._publish = publish

    # -- the verbs: each sends the kept acks first (or with its own round trip) --------------

    def fetch(self, queues: Sequence[str], limit: int, timeout: float) -> list[Delivery]:
        """Hold and return up to `limit` visible messages, waiting up to `timeout` seconds
        (blocking, not spinning) when none is there. Highest priority first, then oldest.
        Each is stamped with the time it was asked for (`Delivery.held_since`)."""
        check_fetch_args(queues, limit)
        asked = time.monotonic()
        got = self._with_kept(lambda acks: self._fetch(acks, queues, limit, timeout))
        return [msgspec.structs.replace(d, held_since=asked) for d in got]

    def still_holds(self, delivery: Delivery) -> bool:
        """Whether this consumer still holds `delivery`, asked before it starts the message
        and before it stores or acks anything for it. A lease engine gives a message to
        another consumer only once it has been held past lease_ttl by a worker taken for dead
        (cut off from the broker longer than that): a delivery held less than
        `unchallenged_for` is its own without asking; an older one costs one round trip."""
        if time.monotonic() - delivery.held_since < self.unchallenged_for:
            return True
        with self._guard():
            return self._still_holds(delivery)

    def gave_back(self, delivery: Delivery) -> bool:
        """Asked once `still_holds` said no: whether the broker itself took `delivery` back,
        to deliver it again, while this consumer stayed connected (RabbitMQ closes a channel
        whose delivery outlived its `consumer_timeout`), rather than taking this worker for
        dead. Its outcome may then be stored (a newer run's record is fenced), not acked."""
        return False

    def finish(
        self, delivery: Delivery, result: ResultWrite | None, effects: Effects | None = None
    ) -> None:
        """The message is done: store its result (when there is one to keep), do its effects,
        then ack, in this order, so that a crash in between runs the task again rather than
        losing its result. Without a result or effects the ack may be kept back (see the
        module's docstring). A session that `joins_results` stores and acks in one round trip;
        any other stores first, outside `_guard`, so that a slow result store never holds up
        the connection."""
        if effects is not None:
            self._finish_with(delivery, result, effects)
        elif result is None and self._keeps_acks:
            self._keep(delivery)
        elif result is None:
            self._with_kept(lambda acks: self._ack_finished(acks, delivery))
        elif self.joins_results:
            self._with_kept(lambda acks: self._store_and_ack(acks, delivery, result))
        else:
            self.results.store(
                result.task_id, result.state, result.payload, result.ttl, result.fence
            )
            self._with_kept(lambda acks: self._ack_finished(acks, delivery))

    def _finish_with(
        self, delivery: Delivery, result: ResultWrite | None, effects: Effects
    ) -> None:
        writes = effects.writes if result is None else (result, *effects.writes)
        if self.atomic_effects:
            self._with_kept(lambda acks: self._finish_atomically(acks, delivery, writes, effects))
            return
        vote = effects.vote
        fires = self.results.vote(writes, vote) if vote is not None else False
        if vote is None and writes:
            self.results.store_all(writes)
        publish = (*effects.publish, *vote.then) if vote is not None and fires else effects.publish
        if publish:
            self._publish(publish)
        if vote is not None and fires:
            self.results.fired(vote)
        self._with_kept(lambda acks: self._ack_finished(acks, delivery))

    def _keep(self, delivery: Delivery) -> None:
        with self._guard():
            if not self._kept:
                self._kept_since = time.monotonic()
            self._kept.append(delivery)
            overdue = len(self._kept) >= MAX_KEPT
        if overdue or time.monotonic() - self._kept_since > MAX_KEPT_WAIT:
            self.flush()

    def requeue(self, delivery: Delivery, delay: float = 0.0) -> None:
        """Give the message back, visible again after `delay` seconds, not counted as run."""
        self._with_kept(lambda acks: self._requeue(acks, delivery, delay))

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move the message to its queue's dead letters with the reason."""
        self._with_kept(lambda acks: self._dead_letter(acks, delivery, reason))

    def stop_fetching(self) -> None:
        """This consumer will not fetch again (its child takes no more work): engines that
        push messages stop now, before its last ack frees room for another."""
        self._with_kept(self._stop_fetching)

    def release(self, running: Sequence[str] = ()) -> int:
        """Give back everything this consumer holds (it is leaving); return how many.
        Receipts in `running` had started: their delivery count stands."""
        return self._with_kept(lambda acks: self._release(acks, running))

    def flush(self) -> None:
        """Send the kept acks now."""
        self._with_kept(self._send_acks)

    def close(self) -> None:
        """Send the kept acks and stop consuming; the broker's connection stays open."""
        self._with_kept(self._close)

    def kept_acks(self) -> list[tuple[str, str]]:
        """(queue, receipt) of each message finished but not acked yet: the child's
        scoreboard slot carries them, so that the master acks them if the child dies."""
        with self._guard():
            return [(d.queue, d.receipt) for d in self._kept]

    def _with_kept(self, verb: Callable[[list[Delivery]], T]) -> T:
        """Run `verb` with the kept acks it must send. If it fails they stay kept, for the next
        call: sending an ack twice is harmless, losing one is not."""
        with self._guard():
            acks, self._kept = self._kept, []
            try:
                return verb(acks)
            except BaseException:
                self._kept[:0] = acks
                raise

    def _guard(self) -> AbstractContextManager[object]:
        """Held around each verb: engines whose connection another thread also uses lock it."""
        return _UNLOCKED

    # -- what each engine does ---------------------------------------------------------------

    @abc.abstractmethod
    def _send_acks(self, acks: list[Delivery]) -> None:
        """Ack these (finished, kept back); acks for messages this consumer no longer holds
        are ignored."""

    @abc.abstractmethod
    def _fetch(
        self, acks: list[Delivery], queues: Sequence[str], limit: int, timeout: float
    ) -> list[Delivery]: ...

    def _still_holds(self, delivery: Delivery) -> bool:
        """Whether the broker still has `delivery` held by this consumer (one round trip)."""
        return True

    def _ack_finished(self, acks: list[Delivery], delivery: Delivery) -> None:
        """Ack `delivery` (finished, its result stored) with `acks`."""
        self._send_acks([*acks, delivery])

    def _store_and_ack(self, acks: list[Delivery], delivery: Delivery, result: ResultWrite) -> None:
        """Where `joins_results`: the result's writes, then the acks, in one round trip."""
        raise NotImplementedError

    def _finish_atomically(
        self,
        acks: list[Delivery],
        delivery: Delivery,
        writes: tuple[ResultWrite, ...],
        effects: Effects,
    ) -> None:
        """Where `atomic_effects`: the writes, the vote (publishing its `then` if it fires),
        the effects' publishes, the acks and the ack of `delivery`, in one round trip or
        transaction."""
        raise NotImplementedError

    @abc.abstractmethod
    def _requeue(self, acks: list[Delivery], delivery: Delivery, delay: float) -> None: ...

    @abc.abstractmethod
    def _dead_letter(self, acks: list[Delivery], delivery: Delivery, reason: str) -> None: ...

    def _stop_fetching(self, acks: list[Delivery]) -> None:
        self._send_acks(acks)  # pulling engines have nothing more to stop

    @abc.abstractmethod
    def _release(self, acks: list[Delivery], running: Sequence[str]) -> int: ...

    def _close(self, acks: list[Delivery]) -> None:
        self._send_acks(acks)


def _no_publisher(messages: Sequence[Outgoing]) -> None:
    raise RuntimeError("a session publishes through the broker that opened it")
