"""Publishing to RabbitMQ for `forkq.engines.amqp.broker`: a confirm channel for single messages, a
transaction channel for batches, and the declarations a publish needs (work queues, the dead
queue, delay buckets), each made once per connection and again every ten minutes."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from forkq.engines.amqp.topology import (
    DECLARE_AGAIN_AFTER,
    MAX_DELAY_MS,
    YEAR_MS,
    Topology,
    bucket_ms,
)
from forkq.engines.contract import Outgoing
from forkq.exceptions import BrokerError, ConfigurationError

log = logging.getLogger("forkq.broker")

PRECONDITION_FAILED = 406  # AMQP: a queue declared again with other arguments
_told: set[str] = set()  # dead queues whose caps this process said it cannot apply

NOT_FOUND = 404  # the reply code of a passive declare of a queue that does not exist


def _uncapped_once(topology: Topology, said: str) -> None:
    if topology.dead in _told:
        return
    _told.add(topology.dead)
    args = topology.dead_arguments()
    policy = {"max-length": args.get("x-max-length"), "message-ttl": args.get("x-message-ttl")}
    log.warning(
        "RabbitMQ queue %s exists with other arguments than this forkq's dead-letter caps "
        "(%s): it keeps its own. To cap it, set a policy: rabbitmqctl set_policy %s '^%s$' "
        "'%s' --apply-to queues (or delete it once empty)",
        topology.dead, said, topology.dead, re.escape(topology.dead),
        json.dumps({k: v for k, v in policy.items() if v is not None}),
    )  # fmt: skip


def now_ms() -> int:
    return int(time.time() * 1000)


def due_ms_after(delay: float) -> int | None:
    """When a message published with `delay` seconds is due (ms since the epoch); None: now.
    A delay more than MAX_DELAY_MS long (or not a number) is refused: a message due later is
    dead-lettered when it arrives (forkq.engines.amqp.reading)."""
    if delay <= 0:
        return None
    if not delay * 1000 <= MAX_DELAY_MS:
        years = MAX_DELAY_MS // YEAR_MS
        raise ConfigurationError(f"a delay of {delay:g} s: RabbitMQ takes at most {years} years")
    return now_ms() + int(delay * 1000)


class Publisher:
    def __init__(self, topology: Topology, connection: Callable[[], Any]) -> None:
        self.topology = topology
        self._connection = connection  # opens the broker's connection when it is not open
        self._confirming: BlockingChannel | None = None
        self._bulk: BlockingChannel | None = None  # transaction mode, for batches
        self._returned: list[str] = []  # unroutable messages RabbitMQ sent back in a batch
        self._declared: dict[str, float] = {}  # AMQP queue -> when this connection declared it

    def forget(self) -> None:
        """The connection is gone: its channels and declarations with it."""
        self.forget_channels()
        self._declared.clear()

    def forget_channels(self) -> None:
        self._confirming = self._bulk = None
        self._returned = []  # a batch that failed is sent again whole: its returns with it

    def channel(self) -> BlockingChannel:
        """The confirm channel: a publish on it returns once RabbitMQ has the message."""
        if self._confirming is None or not self._confirming.is_open:
            self._confirming = self._connection().channel()
            self._confirming.confirm_delivery()
        return self._confirming

    def ready(self, amqp_queue: str) -> int:
        """The queue's ready messages, 0 when RabbitMQ has no such queue: a passive declare,
        on a channel of its own, since RabbitMQ closes the channel that asks for a queue it
        lacks."""
        channel = self._connection().channel()
        try:
            return int(channel.queue_declare(amqp_queue, passive=True).method.message_count)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == NOT_FOUND:
                return 0
            raise
        finally:
            if channel.is_open:
                channel.close()

    def declare(self, amqp_queue: str, arguments: dict[str, Any]) -> None:
        declared = self._declared.get(amqp_queue)
        if declared is not None and time.monotonic() - declared < DECLARE_AGAIN_AFTER:
            return
        self.channel().queue_declare(amqp_queue, durable=True, arguments=arguments)
        self._declared[amqp_queue] = time.monotonic()

    def declare_dead(self) -> None:
        """P.dead with the caps; one that exists with other arguments (declared by an older
        forkq, or with other caps) is used as it is, and that is logged once per process.
        Declared on a channel of its own, which RabbitMQ closes when it refuses: the
        publishing channels, which callers hold, stay open."""
        dead = self.topology.dead
        declared = self._declared.get(dead)
        if declared is not None and time.monotonic() - declared < DECLARE_AGAIN_AFTER:
            return
        channel = self._connection().channel()
        try:
            channel.queue_declare(dead, durable=True, arguments=self.topology.dead_arguments())
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != PRECONDITION_FAILED:
                raise
            _uncapped_once(self.topology, exc.reply_text)
        finally:
            if channel.is_open:
                channel.close()
        self._declared[dead] = time.monotonic()

    def declare_work(self, queue: str) -> str:
        name = self.topology.queue(queue)
        self.declare_dead()
        self.declare(name, self.topology.work_arguments())
        return name

    def publish_chunk(self, chunk: Sequence[Outgoing]) -> None:
        """One message on the confirm channel, several in one transaction."""
        channel = self.channel() if len(chunk) == 1 else self._tx_channel()
        for m in chunk:
            self.send(m.queue, m.body, m.priority, {"x-forkq-starts": 0}, m.delay, channel)
        if channel is not self._confirming:
            channel.tx_commit()
            self._connection().process_data_events(time_limit=0)  # returns come before commit-ok
            if self._returned:
                returned, self._returned = self._returned, []
                raise BrokerError(f"rabbitmq broker: {len(returned)} unroutable: {returned[0]}")

    def _tx_channel(self) -> BlockingChannel:
        if self._bulk is None or not self._bulk.is_open:
            self._bulk = self._connection().channel()
            self._bulk.tx_select()
            self._bulk.add_on_return_callback(
                lambda _ch, method, _props, _body: self._returned.append(method.reply_text)
            )
        return self._bulk

    def send(
        self,
        queue: str,
        body: bytes,
        priority: int,
        headers: dict[str, Any],
        delay: float,
        channel: BlockingChannel | None = None,
    ) -> None:
        """On the confirm channel (the default): returns once RabbitMQ has the message, raises
        if not. On the transaction channel: the commit tells."""
        channel = channel or self.channel()
        name = self.declare_work(queue)
        properties = pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent, priority=priority, headers=headers
        )
        due_ms = due_ms_after(delay)
        if due_ms is None:
            channel.basic_publish("", name, body, properties, mandatory=True)
        else:
            self.send_delayed(name, body, properties, due_ms, channel)

    def resend(
        self, queue: str, body: bytes, priority: int, starts: int, due_ms: int | None
    ) -> None:
        """A message forkq publishes again (counted, early, requeued), on the confirm channel,
        with forkq's own headers only: whatever else it carried is dropped."""
        name = self.declare_work(queue)
        properties = pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent,
            priority=priority,
            headers={"x-forkq-starts": starts},
        )
        if due_ms is None:
            self.channel().basic_publish("", name, body, properties, mandatory=True)
        else:
            self.send_delayed(name, body, properties, due_ms)

    def send_delayed(
        self,
        name: str,
        body: bytes,
        properties: pika.BasicProperties,
        due_ms: int,
        channel: BlockingChannel | None = None,
    ) -> None:
        bucket = bucket_ms(due_ms - now_ms())
        self._declare_bucket(bucket)
        headers = {**(properties.headers or {}), "x-forkq-due": due_ms, "forkq-bucket": bucket}
        delayed = pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent,
            priority=properties.priority,
            headers=headers,
        )
        exchange = self.topology.delay_exchange
        (channel or self.channel()).basic_publish(exchange, name, body, delayed, mandatory=True)

    def _declare_bucket(self, bucket: int) -> None:
        queue = self.topology.delay_queue(bucket)
        declared = self._declared.get(queue)
        if declared is not None and time.monotonic() - declared < DECLARE_AGAIN_AFTER:
            return
        channel, exchange = self.channel(), self.topology.delay_exchange
        channel.exchange_declare(exchange, "headers", durable=True)
        channel.queue_declare(queue, durable=True, arguments=self.topology.delay_arguments(bucket))
        arguments = {"x-match": "all", "forkq-bucket": bucket}
        channel.queue_bind(queue, exchange, routing_key="", arguments=arguments)
        self._declared[queue] = time.monotonic()
