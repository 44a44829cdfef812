"""One consumer of the RabbitMQ broker (`forkq.engines.amqp.broker`): its own channel, what
RabbitMQ pushed to it, the messages it handed out, and how it settles them.

    fetch   ─► with a timeout: basic.qos = held + limit, basic.consume on each queue; RabbitMQ
               pushes into the channel's buffer and fetch hands out from it, waiting for a
               push when it is empty. Without one: basic.get into the buffer.
    buffer  ─► refused by its headers (`forkq.engines.amqp.reading`): dead-lettered; early
               (its delay was rounded down): published again for the rest; else held under
               its receipt, `CHANNEL.TAG`, and handed out
    finish  ─► the result stored, then basic.ack. Without a result the ack is kept back
               (`ConsumerSession`) and goes with the consumer's next call, or from the keeper
               thread during a long task: one basic.ack (multiple) for the batch
    requeue / dead_letter ─► publish (confirmed), then basic.ack
    release ─► cancel, every held and pushed message published back (counted where it had
               started), the channel closed

Every call goes through `Link.run` under the connection's lock (also the session's
`_guard`: the keeper thread flushes kept acks), and none is repeated on a new connection: a
delivery tag means nothing on another channel, and RabbitMQ put back what the old one held
(`forkq.engines.amqp.link`). Kept acks whose channel died with it are dropped: RabbitMQ
redelivers those messages.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from functools import partial
from typing import Any

import msgspec
from pika.adapters.blocking_connection import BlockingChannel

from forkq.engines.amqp.dead import publish_dead
from forkq.engines.amqp.link import Link
from forkq.engines.amqp.publish import Publisher, due_ms_after, now_ms
from forkq.engines.amqp.reading import Message, message_from
from forkq.engines.contract import (
    Capabilities,
    Consumer,
    ConsumerSession,
    Delivery,
    ResultBackend,
)
from forkq.exceptions import BrokerError, ConfigurationError

EARLY_MS = 5  # a message arriving this close to its due time runs now
# Seconds a delivery stays this consumer's without asking (`ConsumerSession.still_holds`):
# RabbitMQ takes a message back only when its channel closes, and closes a silent connection
# only after two heartbeat intervals of at least a second each.
UNCHALLENGED_FOR = 1.0


_OPENED = itertools.count(1)  # consumer channels this process opened: each has its own number


def receipt_of(opened: int, tag: int) -> str:
    """A held message's receipt: which consumer channel of this process it came on, and its
    delivery tag there. A new connection reuses channel numbers and starts tags at 1 again, so
    the channel's own number would let a delivery from a dropped channel name, and settle, a
    message that a later channel holds."""
    return f"{opened}.{tag}"


class ConsumerChannel(msgspec.Struct):
    """A consumer's channel and what is on it; RabbitMQ puts all of it back when it closes."""

    channel: BlockingChannel
    opened: int = msgspec.field(default_factory=lambda: next(_OPENED))
    consuming: dict[str, str] = msgspec.field(default_factory=dict)  # consumer tag -> forkq queue
    buffer: deque[Message] = msgspec.field(default_factory=deque)
    held: dict[str, Message] = msgspec.field(default_factory=dict)  # receipt -> message
    qos: int = 0

    def ack(self, tags: list[int]) -> None:
        """Ack held messages that are done (already out of `held`): one basic.ack (multiple),
        which covers every tag up to it, for those below every message still held (a child
        settles in tag order), and one basic.ack each for the rest. Messages pushed but not
        handed out yet have higher tags than any held."""
        lowest = min((m.tag for m in self.held.values()), default=None)
        below = tags if lowest is None else [tag for tag in tags if tag < lowest]
        if below:
            self.channel.basic_ack(max(below), multiple=True)
        if lowest is not None:
            for tag in tags:
                if tag > lowest:
                    self.channel.basic_ack(tag)

    def consume(self, queues: Sequence[str], declare: Callable[[str], str]) -> None:
        """Subscribe to each queue not subscribed yet (`declare` names its AMQP queue)."""
        for queue in sorted(set(queues) - set(self.consuming.values())):

            def received(_ch: Any, method: Any, props: Any, body: bytes, q: str = queue) -> None:
                self.buffer.append(message_from(q, method, props, body))

            tag = self.channel.basic_consume(declare(queue), received)
            self.consuming[tag] = queue

    def pull(self, queues: Sequence[str], limit: int, declare: Callable[[str], str]) -> int:
        """basic.get into the buffer, up to `limit` in it; returns how many came."""
        before = len(self.buffer)
        for queue in queues:
            name = declare(queue)
            while len(self.buffer) < limit:
                method, props, body = self.channel.basic_get(name)
                if method is None:
                    break
                self.buffer.append(message_from(queue, method, props, body))
        return len(self.buffer) - before

    def set_qos(self, prefetch: int, quorum: bool) -> None:
        # Classic queues: one limit for the channel, changed on the fly. Quorum queues only
        # take a per-consumer limit, fixed when each consumer starts.
        if self.qos != prefetch:
            self.channel.basic_qos(prefetch_count=prefetch, global_qos=not quorum)
            self.qos = prefetch

    def cancel(self, quorum: bool, connection: Callable[[], Any]) -> None:
        """Cancel the consumer while it still holds a message: pika rejects what is in flight
        at a cancel, and RabbitMQ redelivers that as if this process had died (a start
        counted). So first no credit (qos = what is outstanding), and what was already sent
        goes into the buffer. With nothing outstanding a push can still cross the cancel."""
        if not self.consuming or not self.channel.is_open:
            return
        outstanding = len(self.held) + len(self.buffer)
        if outstanding and not quorum:
            self.set_qos(outstanding, quorum)
        connection().process_data_events(time_limit=0)
        for tag in list(self.consuming):
            self.channel.basic_cancel(tag)
        self.consuming.clear()


class AMQPSession(ConsumerSession):
    """Made by `AMQPBroker.consumer`; its channel is opened at its first fetch, and again at
    the first fetch after the connection or the channel was lost."""

    def __init__(
        self,
        consumer: Consumer,
        results: ResultBackend,
        capabilities: Capabilities,
        link: Link,
        publisher: Publisher,
        on_waiting_fetch: Callable[[], None],
    ) -> None:
        super().__init__(consumer, results, capabilities)
        self._link = link
        self._publisher = publisher
        self._quorum = publisher.topology.quorum
        self._on_waiting_fetch = on_waiting_fetch  # the broker starts its keeper thread
        self._on: ConsumerChannel | None = None
        self.unchallenged_for = UNCHALLENGED_FOR

    def forget(self) -> None:
        """The connection is gone, and this consumer's channel with it."""
        self._on = None

    def holds(self, queue: str) -> int:
        """Messages of `queue` pushed to this consumer or held by it (RabbitMQ counts them as
        neither ready nor gone)."""
        if self._on is None:
            return 0
        return sum(1 for m in [*self._on.held.values(), *self._on.buffer] if m.queue == queue)

    def _guard(self) -> AbstractContextManager[object]:
        return self._link.lock  # the keeper thread flushes kept acks during a long task

    def _still_holds(self, delivery: Delivery) -> bool:
        """Whether the channel it came on is this consumer's and still open, proved by one
        round trip (a basic.qos of the limit it has, which RabbitMQ answers): a connection
        RabbitMQ closed while this worker was cut off (its heartbeats missed) looks open here
        until this process next speaks on it. A closed one held nothing any more: RabbitMQ
        put its messages back, and the next fetch opens a new connection."""
        on = self._on
        if on is None or delivery.receipt not in on.held or not on.channel.is_open:
            return False
        probe = partial(on.channel.basic_qos, prefetch_count=on.qos, global_qos=not self._quorum)
        try:
            self._link.run(probe, repeatable=False)
        except BrokerError:
            if on.channel.is_open:
                raise
            return False
        return True

    def gave_back(self, delivery: Delivery) -> bool:
        """The channel it came on closed while the connection is open: RabbitMQ closed that
        channel alone (a delivery past `consumer_timeout`: PRECONDITION_FAILED), and puts what
        it held back, as a partition, which closes the whole connection, does too."""
        on = self._on
        return on is not None and not on.channel.is_open and on.channel.connection.is_open

    # -- the verbs -----------------------------------------------------------------------------

    def _send_acks(self, acks: list[Delivery]) -> None:
        if acks:
            self._link.run(partial(self._ack, acks), repeatable=False)

    def _ack(self, acks: Sequence[Delivery]) -> None:
        """Ack those of `acks` this consumer's channel still holds; the rest are not its own,
        or died with an earlier channel (RabbitMQ put them back)."""
        on = self._on
        if on is None or not on.channel.is_open or not acks:
            return
        tags = [on.held.pop(d.receipt).tag for d in acks if d.receipt in on.held]
        if tags:
            on.ack(tags)

    def _fetch(
        self, acks: list[Delivery], queues: Sequence[str], limit: int, timeout: float
    ) -> list[Delivery]:
        """With a timeout, the channel consumes (RabbitMQ pushes up to basic.qos messages,
        fetch hands them out); with none, it pulls with basic.get, so a caller that only polls
        never has messages pushed to it that it will not take."""
        fetch = partial(self._fetch_now, acks, queues, limit, timeout)
        got = self._link.run(fetch, repeatable=False)
        if timeout > 0:
            self._on_waiting_fetch()
        return got

    def _fetch_now(
        self, acks: list[Delivery], queues: Sequence[str], limit: int, timeout: float
    ) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        self._ack(acks)  # before a new channel is opened: their receipts are the old one's
        on = self._channel()
        declare = self._publisher.declare_work
        if timeout > 0:  # at every fetch, so that a buffer never empty follows the limit
            on.set_qos(len(on.held) + limit, self._quorum)
        got = self._take(on, limit)
        if timeout <= 0:
            while len(got) < limit and on.pull(queues, limit - len(got), declare):
                got += self._take(on, limit - len(got))
        elif not got:
            on.consume(queues, declare)
            while not (got := self._take(on, limit)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # Returns as soon as RabbitMQ pushes something (or the time is up).
                self._link.open().process_data_events(time_limit=min(remaining, 1.0))
        return got

    def _channel(self) -> ConsumerChannel:
        if self._on is None or not self._on.channel.is_open:
            self._on = ConsumerChannel(self._link.open().channel())
        return self._on

    def _requeue(self, acks: list[Delivery], delivery: Delivery, delay: float) -> None:
        def requeue(on: ConsumerChannel, message: Message) -> None:
            try:
                due = due_ms_after(delay)
            except ConfigurationError as exc:  # a retry's countdown, say
                self._bury(on, message, f"requeued with {exc}")
            else:
                self._republish(on, message, due_ms=due)

        self._settle(acks, delivery, requeue)

    def _dead_letter(self, acks: list[Delivery], delivery: Delivery, reason: str) -> None:
        self._settle(acks, delivery, lambda on, message: self._bury(on, message, reason))

    def _settle(
        self,
        acks: list[Delivery],
        delivery: Delivery,
        action: Callable[[ConsumerChannel, Message], None],
    ) -> None:
        def settle() -> None:
            self._ack(acks)
            on = self._on
            if on is not None and delivery.receipt in on.held:  # else not this channel's
                action(on, on.held.pop(delivery.receipt))

        self._link.run(settle, repeatable=False)

    def _stop_fetching(self, acks: list[Delivery]) -> None:
        def stop() -> None:
            self._ack(acks)
            if self._on is not None:
                self._on.cancel(self._quorum, self._link.open)

        self._link.run(stop, repeatable=False)  # the consumer died with its connection

    def _release(self, acks: list[Delivery], running: Sequence[str]) -> int:
        return self._link.run(partial(self._release_now, acks, running), repeatable=False)

    def _release_now(self, acks: list[Delivery], running: Sequence[str]) -> int:
        self._ack(acks)  # what was finished is never given back
        on, self._on = self._on, None
        if on is None or not on.channel.is_open:
            return 0
        on.cancel(self._quorum, self._link.open)
        held = list(on.held.items())
        for receipt, message in held:
            # A returned one keeps the start its lost delivery was counted as.
            starts = message.starts + (receipt in running) + message.redelivered
            self._republish(on, message, starts=starts)
        for message in on.buffer:  # not read yet: one that was refused is now
            if message.refused is not None:
                self._bury(on, message, message.refused)
            else:
                self._republish(on, message)
        on.channel.close()
        return len(held) + len(on.buffer)

    def _close(self, acks: list[Delivery]) -> None:
        def close() -> None:
            self._ack(acks)
            on, self._on = self._on, None
            if on is not None and on.channel.is_open:
                on.channel.close()  # RabbitMQ puts back what it still held

        self._link.run(close, repeatable=False)

    # -- what arrived --------------------------------------------------------------------------

    def _take(self, on: ConsumerChannel, limit: int) -> list[Delivery]:
        got: list[Delivery] = []
        now = now_ms()
        while on.buffer and len(got) < limit:
            message = on.buffer.popleft()
            if message.refused is not None:  # its headers or properties (reading.py)
                self._bury(on, message, message.refused)
            elif message.due_ms is not None and message.due_ms > now + EARLY_MS:
                self._republish(on, message, due_ms=message.due_ms)  # rounded early: the rest
            else:
                receipt = receipt_of(on.opened, message.tag)
                on.held[receipt] = message
                got.append(_delivery(receipt, message))
        return got

    def _republish(
        self,
        on: ConsumerChannel,
        message: Message,
        *,
        starts: int | None = None,
        due_ms: int | None = None,
    ) -> None:
        """Publish the message again (confirmed), then ack this copy: at least once."""
        starts = message.starts if starts is None else starts
        self._publisher.resend(message.queue, message.body, message.priority, starts, due_ms)
        on.channel.basic_ack(message.tag)

    def _bury(self, on: ConsumerChannel, message: Message, reason: str) -> None:
        """Dead-letter the message (confirmed), then ack this copy."""
        publish_dead(self._publisher, message.queue, message.body, message.priority, reason)
        on.channel.basic_ack(message.tag)


def _delivery(receipt: str, message: Message) -> Delivery:
    """A redelivered message came back from a holder that vanished: returned, with that lost
    delivery counted as a start (see `Delivery`)."""
    count = message.starts + (2 if message.redelivered else 1)
    return Delivery(receipt, message.queue, message.body, count, message.redelivered)
