"""The RabbitMQ broker (AMQP 0-9-1, through pika): durable queues, persistent messages,
publisher confirms, manual acks after the result is stored.

    publish ─► confirm channel ─► P.Q                     (due now; mandatory, confirmed)
                               └► P.delay ─► P.delay.MS ─(TTL expires)─► P.Q   (countdown, eta)
    fetch   ─► one channel per consumer, basic.qos = held + limit, basic.consume on each queue;
               deliveries wait in the channel's buffer until fetch hands them out
    ack     ─► basic.ack          requeue / dead-letter ─► publish (confirmed), then basic.ack
    finish  ─► no result to store: the ack is kept back; one basic.ack (multiple) for the
               batch with the next fetch, by the keeper thread during a long task, or before
               any other call (see "Kept acks" in docs/architecture.md)

Recovery is RabbitMQ's: when a child dies its connection closes and RabbitMQ redelivers what
it held, flagged redelivered but with no word of whether it had started. Such a message is
handed out as a returned delivery (`Delivery.returned`): its count takes the lost delivery
as a start, and the executor counts the starts of returned deliveries in the result backend,
so the worker-lost limit ends a message that kills its processes while one that only sat in
a dead neighbour's buffer, or in a connection that dropped, is not charged for it. A process
that releases its own consumer (a child leaving) publishes back what it held with the right
counts instead. Leases and worker heartbeats are not needed here.

Long tasks: while the child's main thread runs a task, a keeper thread answers AMQP
heartbeats on the child's connection, so it is not dropped and nothing is redelivered while
the task runs. Only processes that fetch start it (the master never fetches, never forks
with it running). Every use of the connection holds one lock.

The connection, and what a call does when it finds it dropped: `forkq.engines.amqp.link`
(driver errors become `BrokerError` there). Names and arguments: `forkq.engines.amqp.topology`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from contextlib import suppress
from functools import partial

import pika
import pika.exceptions

from forkq.engines.amqp.dead import list_dead, publish_dead, take_dead
from forkq.engines.amqp.link import Link
from forkq.engines.amqp.publish import Publisher, due_ms_after, now_ms
from forkq.engines.amqp.reading import Message
from forkq.engines.amqp.seen import beat, seen
from forkq.engines.amqp.session import (
    Keeper,
    Session,
    connection_parameters,
    split_url,
    topology_from,
)
from forkq.engines.contract import (
    DEFAULT_DEAD_CAPS,
    Broker,
    Consumer,
    DeadLetter,
    DeadLetterCaps,
    Delivery,
    ResultBackend,
    ResultWrite,
    Sighting,
    check_fetch_args,
    lease_ttl_from_url,
)
from forkq.exceptions import ConfigurationError

BULK_CHUNK = 1000  # messages per transaction in publish_many

EARLY_MS = 5  # a message arriving this close to its due time runs now


class AMQPBroker(Broker):
    recovers_by = "connection"
    dead_caps_per_queue = False  # one dead-letter queue per prefix: the caps bound it whole

    def __init__(self, url: str, dead_caps: DeadLetterCaps = DEFAULT_DEAD_CAPS) -> None:
        self.lease_ttl = lease_ttl_from_url(url)
        self.dead_caps = dead_caps
        pika_url, own = split_url(url)
        self.topology = topology_from(own, url, dead_caps)
        self.has_priorities = not self.topology.quorum
        self._link = Link(
            connection_parameters(pika_url, own),
            on_lost=self._forget_connection,
            on_channel_error=lambda: self.publisher.forget_channels(),
        )
        self.publisher = Publisher(self.topology, self._open)
        self._sessions: dict[str, Session] = {}
        self._keeper: Keeper | None = None
        self.url = url

    # -- connection: every call goes through Link.run, which says what is repeated and why --

    def _open(self) -> pika.BlockingConnection:
        return self._link.open()

    def _forget_connection(self) -> None:
        self.publisher.forget()
        self._sessions.clear()  # their channels died with the connection: RabbitMQ requeues

    # -- publishing --------------------------------------------------------------------------

    def publish(self, queue: str, body: bytes, *, priority: int = 0, delay: float = 0.0) -> None:
        self.publish_many([(queue, body, priority, delay)])

    def publish_many(self, items: Sequence[tuple[str, bytes, int, float]]) -> None:
        """One message: on the confirm channel. Several: in transactions of up to 1,000 on a
        channel of their own (one round trip each; a commit returns once RabbitMQ has them
        all). A connection found dead (a client idle past its heartbeats, a restarted
        server) is opened again once and the unconfirmed part sent again: at least once."""
        chunks = [items] if len(items) == 1 else [
            items[i : i + BULK_CHUNK] for i in range(0, len(items), BULK_CHUNK)
        ]  # fmt: skip
        for *_, delay in items:  # before any is sent: a transaction holds what was
            due_ms_after(delay)
        for chunk in chunks:
            self._link.run(partial(self.publisher.publish_chunk, chunk), repeatable=True)

    # -- consuming ---------------------------------------------------------------------------

    def fetch(
        self, consumer: Consumer, queues: Sequence[str], limit: int, timeout: float
    ) -> list[Delivery]:
        """With a timeout, the consumer's channel consumes (RabbitMQ pushes up to basic.qos
        messages, fetch hands them out); with none, it pulls with basic.get, so a caller that
        only polls never has messages pushed to it that it will not take."""
        check_fetch_args(queues, limit)
        # Not repeated on a new connection: see forkq.engines.amqp.link.
        got = self._link.run(
            partial(self._fetch, consumer, queues, limit, timeout), repeatable=False
        )
        if timeout > 0:
            self._start_keeper()
        return got

    def _fetch(
        self, consumer: Consumer, queues: Sequence[str], limit: int, timeout: float
    ) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        session = self._session(consumer)
        session.send_kept()
        if timeout > 0:  # at every fetch, so that a buffer never empty follows the limit
            session.set_qos(len(session.held) + limit, self.topology.quorum)
        got = self._take(session, limit)
        if timeout <= 0:
            while len(got) < limit and session.pull(
                queues, limit - len(got), self.publisher.declare_work
            ):
                got += self._take(session, limit - len(got))
        elif not got:
            session.consume(queues, self.publisher.declare_work)
            while not (got := self._take(session, limit)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # Returns as soon as RabbitMQ pushes something (or the time is up).
                self._open().process_data_events(time_limit=min(remaining, 1.0))
        return got

    def _session(self, consumer: Consumer) -> Session:
        session = self._sessions.get(consumer.name)
        if session is None or not session.channel.is_open:
            session = Session(self._open().channel())
            self._sessions[consumer.name] = session
        return session

    def _take(self, session: Session, limit: int) -> list[Delivery]:
        got: list[Delivery] = []
        now = now_ms()
        while session.buffer and len(got) < limit:
            message = session.buffer.popleft()
            if message.refused is not None:  # its headers or properties (amqp_reading)
                self._bury(session, message, message.refused)
            elif message.due_ms is not None and message.due_ms > now + EARLY_MS:
                self._republish(session, message, due_ms=message.due_ms)  # rounded early: the rest
            else:
                receipt = f"{session.channel.channel_number}.{message.tag}"
                session.held[receipt] = message
                got.append(self._delivery(receipt, message))
        return got

    @staticmethod
    def _delivery(receipt: str, message: Message) -> Delivery:
        """A redelivered message came back from a holder that vanished: returned, with that
        lost delivery counted as a start (see `Delivery`)."""
        count = message.starts + (2 if message.redelivered else 1)
        return Delivery(receipt, message.queue, message.body, count, message.redelivered)

    def _republish(
        self,
        session: Session,
        message: Message,
        *,
        starts: int | None = None,
        due_ms: int | None = None,
    ) -> None:
        """Publish the message again (confirmed), then ack this copy: at least once."""
        starts = message.starts if starts is None else starts
        self.publisher.resend(message.queue, message.body, message.priority, starts, due_ms)
        session.channel.basic_ack(message.tag)

    def _bury(self, session: Session, message: Message, reason: str) -> None:
        """Dead-letter the message (confirmed), then ack this copy."""
        publish_dead(self.publisher, message.queue, message.body, message.priority, reason)
        session.channel.basic_ack(message.tag)

    # -- settling ----------------------------------------------------------------------------

    def _held(self, consumer: Consumer, delivery: Delivery) -> tuple[Session, Message] | None:
        session = self._sessions.get(consumer.name)
        if session is None or delivery.receipt not in session.held:
            return None  # not this process's to settle: RabbitMQ redelivers it if need be
        return session, session.held.pop(delivery.receipt)

    def _settle(
        self, consumer: Consumer, delivery: Delivery, action: Callable[[Session, Message], None]
    ) -> None:
        """Never repeated on a new connection: the delivery tag is the old channel's, and
        RabbitMQ puts the message back when that channel dies (see amqp_link)."""

        def settle() -> None:
            if found := self._held(consumer, delivery):
                action(*found)

        self._link.run(settle, repeatable=False)

    def ack(self, consumer: Consumer, delivery: Delivery) -> None:
        def ack(session: Session, message: Message) -> None:
            session.send_kept()
            session.channel.basic_ack(message.tag)

        self._settle(consumer, delivery, ack)

    def finish(
        self,
        consumer: Consumer,
        delivery: Delivery,
        result: ResultWrite | None,
        backend: ResultBackend,
    ) -> None:
        """Without a result to store the ack is kept back, to go with the batch's others."""
        if result is not None:
            super().finish(consumer, delivery, result, backend)
            return
        self._settle(consumer, delivery, lambda session, message: session.keep(message.tag))

    def requeue(self, consumer: Consumer, delivery: Delivery, delay: float = 0.0) -> None:
        def requeue(session: Session, message: Message) -> None:
            session.send_kept()
            try:
                due = due_ms_after(delay)
            except ConfigurationError as exc:  # a retry's countdown, say
                self._bury(session, message, f"requeued with {exc}")
            else:
                self._republish(session, message, due_ms=due)

        self._settle(consumer, delivery, requeue)

    def dead_letter(self, consumer: Consumer, delivery: Delivery, reason: str) -> None:
        def dead_letter(session: Session, message: Message) -> None:
            session.send_kept()
            self._bury(session, message, reason)

        self._settle(consumer, delivery, dead_letter)

    def stop_fetching(self, consumer: Consumer) -> None:
        def stop() -> None:
            session = self._sessions.get(consumer.name)
            if session is not None:
                session.cancel(self.topology.quorum, self._open)

        self._link.run(stop, repeatable=False)  # the consumer died with its connection

    def release(
        self,
        consumer_name: str,
        running: Collection[str] = (),
        finished: Collection[tuple[str, str]] = (),  # this engine keeps no acks back
    ) -> int:
        """Only this process's own consumers: another process's (a dead child's) messages
        come back when its connection closes. Not repeated on a new connection: neither."""
        return self._link.run(partial(self._release, consumer_name, running), repeatable=False)

    def _release(self, consumer_name: str, running: Collection[str]) -> int:
        session = self._sessions.pop(consumer_name, None)
        if session is None or not session.channel.is_open:
            return 0
        session.cancel(self.topology.quorum, self._open)
        session.send_kept()  # with no consumer left to cancel, cancel sent none
        held = list(session.held.items())
        for receipt, message in held:
            # A returned one keeps the start its lost delivery was counted as.
            starts = message.starts + (receipt in running) + message.redelivered
            self._republish(session, message, starts=starts)
        for message in session.buffer:  # not read yet: one that was refused is now
            if message.refused is not None:
                self._bury(session, message, message.refused)
            else:
                self._republish(session, message)
        session.channel.close()
        return len(held) + len(session.buffer)

    def heartbeat(self, worker: str, queues: Sequence[str] = ()) -> None:
        """No hold to renew (RabbitMQ watches connections): answer AMQP heartbeats if open,
        and say which queues `worker` consumes (`forkq.engines.amqp.seen`). A connection
        found dropped is forgotten, and the next call opens another."""

        def answer() -> None:
            connection = self._link.connection
            if connection is not None and connection.is_open:
                connection.process_data_events(time_limit=0)
            if queues:
                beat(self.publisher, worker, queues)

        self._link.run(answer, repeatable=True)

    def consumers_seen(self, queue: str, within: float) -> list[Sighting]:
        return self._link.run(
            partial(seen, self.publisher, self._open, queue, within), repeatable=True
        )

    # -- queues and dead letters: all repeatable on a new connection (see amqp_link) ---------

    def purge(self, queue: str) -> int:
        def purge() -> int:
            name = self.publisher.declare_work(queue)
            return int(self.publisher.channel().queue_purge(name).method.message_count)

        return self._link.run(purge, repeatable=True)

    def size(self, queue: str) -> int:
        """Ready messages, plus those this process holds. Delayed messages sit in the shared
        delay queues and are not counted."""

        def size() -> int:
            name = self.publisher.declare_work(queue)
            ready = self.publisher.channel().queue_declare(name, passive=True).method.message_count
            mine = sum(
                1
                for s in self._sessions.values()
                for m in [*s.held.values(), *s.buffer]
                if m.queue == queue
            )
            return int(ready) + mine

        return self._link.run(size, repeatable=True)

    def dead_letters(self, queue: str | None = None, limit: int = 100) -> list[DeadLetter]:
        return self._link.run(
            partial(list_dead, self.publisher, self._open, queue, limit), repeatable=True
        )

    def requeue_dead(self, receipts: Collection[str] | None = None) -> int:
        def chosen(letter: DeadLetter) -> bool:
            return receipts is None or letter.receipt in receipts

        return self._link.run(
            partial(take_dead, self.publisher, self._open, chosen, republish=True),
            repeatable=True,
        )

    def purge_dead(self, queue: str | None = None) -> int:
        def chosen(letter: DeadLetter) -> bool:
            return queue in (None, letter.queue)

        return self._link.run(
            partial(take_dead, self.publisher, self._open, chosen, republish=False),
            repeatable=True,
        )

    # -- lifetime ----------------------------------------------------------------------------

    def _start_keeper(self) -> None:
        if self._keeper is None:
            self._keeper = Keeper(self._link.lock, self._tend)

    def _tend(self) -> None:
        """From the keeper thread, while a task runs: kept acks go, heartbeats are answered."""
        connection = self._link.connection
        if connection is not None and connection.is_open:
            for session in self._sessions.values():
                session.send_kept()
            connection.process_data_events(time_limit=0)

    def close(self) -> None:
        if self._keeper is not None:
            self._keeper.stop()
        with self._link.lock, suppress(pika.exceptions.AMQPError, OSError):
            for session in self._sessions.values():
                session.send_kept()
        self._link.close()

    def abandon(self) -> None:
        # In a forked child: the socket belongs to the parent's session; drop it unsaid.
        self._link.abandon()
        self.publisher = Publisher(self.topology, self._open)
        self._sessions = {}
        self._keeper = None  # the parent's thread does not exist in this process
