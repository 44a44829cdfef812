"""The RabbitMQ broker (AMQP 0-9-1, through pika): durable queues, persistent messages,
publisher confirms, manual acks after the result is stored.

    publish ─► P.Q                                              (due now; mandatory)
            └► P.delay ─► P.delay.MS ─(TTL expires)─► P.Q       (countdown, eta)
               one message on the confirm channel, several in transactions of up to 1,000
    consumer(c) ─► AMQPSession: a channel of its own (`forkq.engines.amqp.session`)
        fetch  ─► basic.qos = held + limit, basic.consume on each queue; deliveries wait in
                  the channel's buffer until fetch hands them out
        finish ─► basic.ack; with no result to store the ack is kept back and goes as one
                  basic.ack (multiple) for the batch with the next call, or from the keeper
                  thread during a long task
        requeue / dead-letter ─► publish (confirmed), then basic.ack
    heartbeat ─► AMQP heartbeats answered; P.seen.Q told the worker consumes Q

Recovery is RabbitMQ's (`Recovery.CONNECTION`): when a child dies its connection closes and
RabbitMQ redelivers what it held, flagged redelivered but with no word of whether it had
started. Such a message is handed out as a returned delivery (`Delivery.returned`): its
count takes the lost delivery as a start, and the executor counts the starts of returned
deliveries in the result backend, so the worker-lost limit ends a message that kills its
processes while one that only sat in a dead neighbour's buffer, or in a connection that
dropped, is not charged for it. No process can release another's messages (`release` raises
`BrokerError`); a process that releases its own consumer (a child leaving) publishes back
what it held with the right counts instead. Leases are not needed here.

Long tasks: while the child's main thread runs a task, a keeper thread
(`forkq.engines.amqp.keeper`) sends kept acks and answers AMQP heartbeats on the child's
connection, so it is not dropped and nothing is redelivered while the task runs. Only
processes that fetch with a timeout start it (the master never fetches, never forks with it
running). Every use of the connection holds one lock.

The connection, and what a call does when it finds it dropped: `forkq.engines.amqp.link`
(driver errors become `BrokerError` there). Names and arguments: `forkq.engines.amqp.topology`.
The URL's own parameters: `forkq.engines.amqp.url`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import partial

import pika

from forkq.engines.amqp.control import AMQPControl
from forkq.engines.amqp.dead import list_dead, take_dead
from forkq.engines.amqp.keeper import Keeper
from forkq.engines.amqp.link import Link
from forkq.engines.amqp.publish import Publisher
from forkq.engines.amqp.seen import beat, seen
from forkq.engines.amqp.session import AMQPSession
from forkq.engines.amqp.url import connection_parameters, split_url, topology_from
from forkq.engines.contract import (
    DEFAULT_DEAD_CAPS,
    Broker,
    Capabilities,
    Consumer,
    ControlChannel,
    DeadLetter,
    DeadLetterCaps,
    Outgoing,
    Recovery,
    ResultBackend,
    Sighting,
    lease_ttl_from_url,
)

BULK_CHUNK = 1000  # messages per transaction when several are published at once


class AMQPBroker(Broker):
    def __init__(self, url: str, dead_caps: DeadLetterCaps = DEFAULT_DEAD_CAPS) -> None:
        super().__init__()
        self.lease_ttl = lease_ttl_from_url(url)
        self.dead_caps = dead_caps
        pika_url, own = split_url(url)
        self.topology = topology_from(own, url, dead_caps)
        self.capabilities = Capabilities(
            Recovery.CONNECTION,
            priorities=not self.topology.quorum,
            keeps_acks=True,
            dead_caps_per_queue=False,  # one dead-letter queue per prefix: the caps bound it
            counts_delayed=False,  # delayed messages wait in the shared delay queues
            counts_bands=False,  # one queue, ordered by priority inside
        )
        self.publisher = Publisher(self.topology, self._open)
        self._keeper: Keeper | None = None
        self._link = Link(
            connection_parameters(pika_url, own),
            on_lost=self._forget_connection,
            on_channel_error=self.publisher.forget_channels,
        )

    # -- connection: every call goes through Link.run, which says what is repeated and why --

    def _open(self) -> pika.BlockingConnection:
        return self._link.open()

    def _forget_connection(self) -> None:
        self.publisher.forget()
        for session in self._own():
            session.forget()  # their channels died with the connection: RabbitMQ requeues

    # -- publishing --------------------------------------------------------------------------

    def publish(self, messages: Sequence[Outgoing]) -> None:
        """One message: on the confirm channel. Several: in transactions of up to 1,000 on a
        channel of their own (one round trip each; a commit returns once RabbitMQ has them
        all). A connection found dead (a client idle past its heartbeats, a restarted
        server) is opened again once and the unconfirmed part sent again: at least once."""
        chunks = [messages] if len(messages) == 1 else [
            messages[i : i + BULK_CHUNK] for i in range(0, len(messages), BULK_CHUNK)
        ]  # fmt: skip
        for chunk in chunks:
            self._link.run(partial(self.publisher.publish_chunk, chunk), repeatable=True)

    # -- consuming ---------------------------------------------------------------------------

    def _open_session(self, consumer: Consumer, results: ResultBackend) -> AMQPSession:
        return AMQPSession(
            consumer, results, self.capabilities, self._link, self.publisher, self._start_keeper
        )

    def _own(self) -> list[AMQPSession]:
        """This process's sessions (`Broker.consumer` keeps them), as this engine's type.
        Copied at once: the keeper thread reads them while the main thread may add one."""
        return [s for s in list(self._sessions.values()) if isinstance(s, AMQPSession)]

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

    # -- queues and dead letters: all repeatable on a new connection (see link.py) -----------

    def _purge(self, queue: str) -> int:
        def purge() -> int:
            name = self.publisher.declare_work(queue)
            return int(self.publisher.channel().queue_purge(name).method.message_count)

        return self._link.run(purge, repeatable=True)

    def _size(self, queue: str) -> int:
        """Ready messages, plus those this process's consumers were pushed or hold. Delayed
        messages sit in the shared delay queues and are not counted. Asking creates nothing:
        a queue RabbitMQ does not have holds 0 (any name may be asked, by a dashboard's
        visitor too)."""

        def size() -> int:
            ready = self.publisher.ready(self.topology.queue(queue))
            return ready + sum(session.holds(queue) for session in self._own())

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

    def delete_dead(self, receipts: Collection[str]) -> int:
        def chosen(letter: DeadLetter) -> bool:
            return bool(letter.receipt) and letter.receipt in receipts

        return self._link.run(
            partial(take_dead, self.publisher, self._open, chosen, republish=False),
            repeatable=True,
        )

    def purge_dead(self, queue: str | None = None) -> int:
        def chosen(letter: DeadLetter) -> bool:
            return queue in (None, letter.queue)

        return self._link.run(
            partial(take_dead, self.publisher, self._open, chosen, republish=False),
            repeatable=True,
        )

    def control_channel(self, secret: str | None) -> ControlChannel:
        """On a connection of its own (`forkq.engines.amqp.control`)."""
        return AMQPControl(self._link.parameters, self.topology, secret)

    # -- lifetime ----------------------------------------------------------------------------

    def _start_keeper(self) -> None:
        if self._keeper is None:
            self._keeper = Keeper(self._link.lock, self._tend)

    def _tend(self) -> None:
        """From the keeper thread, while a task runs: kept acks go, heartbeats are answered."""
        connection = self._link.connection
        if connection is not None and connection.is_open:
            for session in self._own():
                session.flush()
            connection.process_data_events(time_limit=0)

    def _close(self) -> None:
        if self._keeper is not None:
            self._keeper.stop()
        self._link.close()

    def _abandon(self) -> None:
        # In a forked child: the socket belongs to the parent's session; drop it unsaid.
        self._link.abandon()
        self.publisher.forget()
        self._keeper = None  # the parent's thread does not exist in this process
