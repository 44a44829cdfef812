"""Control on RabbitMQ (`forkq.engines.contract.control`): a fanout exchange to every agent,
an exclusive queue per agent, replies to the client's own queue, and membership in a stream
(names: `forkq.engines.amqp.topology`, "Control").

    client: its inbox, an exclusive server-named queue (once per channel) ─► read the members
            stream ─► publish the request to P.control ─► replies come to the inbox
    agent:  P.control.agent.NAME.HEX (exclusive, auto-delete), bound to P.control, consumed
            `AGENT_PREFETCH` at a time, each acked when taken ─► announce: a record appended
            to P.control.members ─► reply to the inbox named

Why a stream for membership: reading it takes nothing from it, so any number of clients read
it at once and each sees every record (a classic queue is read by taking its messages, and two
readers would each see a part). A read starts at the records of the last `PRESENCE_KEPT`
seconds and ends at a probe record the reader appends itself, so it knows it has read to the
end. pika rejects whatever a stream consumer still had coming when it is cancelled, which a
stream refuses by closing the connection (540); so the read consumes through the channel's
own implementation, unknown to pika's blocking channel, and closing the channel ends it
without a reject. An agent announces itself every `PRESENCE_KEPT / 4` seconds: a read takes
at most five records per worker.

Its own connection (not the broker's): an agent blocks on it, and a client's waits never hold
the broker's lock. Any driver error forgets the connection; a client's call that finds it
dropped is made once more on a new one (`_repeated`), and an agent subscribes again on its next
wait, after its back-off. An interruption (a stop signal while waiting) forgets it too, unsaid,
since pika's state is then unknown.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, TypeVar

import msgspec
import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from forkq.engines.amqp.publish import PRECONDITION_FAILED
from forkq.engines.amqp.reading import ReadingConnection
from forkq.engines.amqp.topology import Topology
from forkq.engines.contract import PRESENCE_KEPT, ControlChannel, Member
from forkq.exceptions import BrokerError, BrokerUnavailable

log = logging.getLogger("forkq.control")
T = TypeVar("T")
READ_WITHIN = 5.0  # seconds a read of the members stream may take
INBOX_PREFIX = "amq.gen-"  # RabbitMQ's names for server-named queues
# Requests an agent holds unacked, at most: a flood stays in its queue on the server, not in
# the agent's memory (a prefetch limit bounds only a consumer that acks).
AGENT_PREFETCH = 16


class _Record(msgspec.Struct, frozen=True):
    """One record of the members stream: an announcement, or a withdrawal (`left`)."""

    name: str
    worker_id: str
    at: float
    left: bool = False


_RECORD = msgspec.json.Decoder(_Record)


class AMQPControl(ControlChannel):
    refresh_every = PRESENCE_KEPT / 4

    def __init__(
        self, parameters: pika.ConnectionParameters, topology: Topology, secret: str | None
    ) -> None:
        super().__init__(secret)
        self._parameters = parameters
        self._topology = topology
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._inbox_queue = ""
        self._replies: deque[bytes] = deque()
        self._requests: deque[tuple[int, bytes]] = deque()  # delivery tag, body: unacked
        self._listening = False  # subscribed on the open channel
        self._declared: set[str] = set()  # the exchange and stream, declared on the channel

    # -- the connection ----------------------------------------------------------------------

    def _open(self) -> BlockingChannel:
        if self._connection is None or not self._connection.is_open:
            self._forget()
            self._connection = pika.BlockingConnection(
                self._parameters, _impl_class=ReadingConnection
            )
        if self._channel is None or not self._channel.is_open:
            self._channel = self._connection.channel()
            self._channel_lost()
        return self._channel

    def _channel_lost(self) -> None:
        """What lived on the channel went with it: the inbox, the subscription."""
        self._inbox_queue, self._listening = "", False
        self._declared.clear()
        self._requests.clear()  # their tags were the channel's: its queue went with it

    def _forget(self, say_goodbye: bool = True) -> None:
        """The connection is gone or unknown: whatever lived on it with it. Without
        `say_goodbye`, nothing more is said on it (pika's state is unknown after an
        interruption): the socket closes with the process, or when collected."""
        connection, self._connection, self._channel = self._connection, None, None
        self._channel_lost()
        if say_goodbye and connection is not None and connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                connection.close()

    @contextmanager
    def _driver(self) -> Iterator[None]:
        """pika's errors as forkq's; any of them, or an interruption, forgets the connection."""
        try:
            yield
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._channel = None
            self._channel_lost()
            raise BrokerError(f"rabbitmq control: {exc!r}") from exc
        except (pika.exceptions.AMQPError, OSError) as exc:
            self._forget()
            raise BrokerUnavailable(f"rabbitmq control: connection lost ({exc!r})") from exc
        except BaseException:
            self._forget(say_goodbye=False)
            raise

    def _repeated(self, call: Callable[[], T]) -> T:
        """`call()` under `_driver`, made once more on a new connection when the one it found
        open had been dropped meanwhile (pika sees that only when it is used: an idle
        connection closed by a restart, a proxy, a firewall). Each call that comes here can
        be: declarations, reads, and publishes taken once (requests by id, replies by worker)."""
        found_open = self._connection is not None and self._connection.is_open
        try:
            with self._driver():
                return call()
        except BrokerUnavailable:
            if not found_open:
                raise
        with self._driver():
            return call()

    # -- client ------------------------------------------------------------------------------

    def _inbox(self) -> str:
        def inbox() -> str:
            channel = self._open()
            if not self._inbox_queue:
                declared = channel.queue_declare("", exclusive=True, auto_delete=True)
                self._inbox_queue = str(declared.method.queue)
                channel.basic_consume(self._inbox_queue, self._on_reply, auto_ack=True)
            return self._inbox_queue

        return self._repeated(inbox)

    def _on_reply(self, _ch: Any, _method: Any, _props: Any, body: bytes) -> None:
        self._replies.append(body)

    def _send_request(self, raw: bytes) -> None:
        exchange = self._topology.control_exchange
        self._repeated(lambda: self._exchange().basic_publish(exchange, "", raw))

    def _next_reply(self, timeout: float) -> bytes | None:
        return self._next(self._replies, timeout)

    # -- agent -------------------------------------------------------------------------------

    def _subscribe(self) -> None:
        assert self._member is not None
        with self._driver():
            channel = self._exchange()
            if self._listening:
                return
            exchange = self._topology.control_exchange
            queue = self._topology.agent_queue(self._member.name, uuid.uuid4().hex[:6])
            channel.queue_declare(queue, exclusive=True, auto_delete=True)
            channel.queue_bind(queue, exchange)
            channel.basic_qos(prefetch_count=AGENT_PREFETCH)
            channel.basic_consume(queue, self._on_request)
            self._listening = True

    def _exchange(self) -> BlockingChannel:
        """The channel, the control exchange declared on it."""
        channel = self._open()
        if self._topology.control_exchange not in self._declared:
            channel.exchange_declare(self._topology.control_exchange, "fanout")
            self._declared.add(self._topology.control_exchange)
        return channel

    def _on_request(self, _ch: Any, method: Any, _props: Any, body: bytes) -> None:
        self._requests.append((method.delivery_tag, body))

    def _next_request(self, timeout: float) -> bytes | None:
        """The next request, acked as it is taken: the server then sends one more."""
        if not self._listening:  # the connection was lost: subscribe again on a new one
            self._subscribe()
        if not self._requests:
            self._wait(timeout)
        if not self._requests:
            return None
        tag, body = self._requests.popleft()
        with self._driver():  # on the channel it came by: a tag is that channel's
            assert self._channel is not None  # its loss would have emptied _requests
            self._channel.basic_ack(tag)
        return body

    def _send_reply(self, address: str, raw: bytes) -> None:
        if not address.startswith(INBOX_PREFIX):  # only a client's inbox
            self._refuse(f"reply address {address[:100]!r} is no client's inbox")
            return
        self._repeated(lambda: self._open().basic_publish("", address, raw))

    def _next(self, arrived: deque[bytes], timeout: float) -> bytes | None:
        if not arrived:
            self._wait(timeout)
        return arrived.popleft() if arrived else None

    def _wait(self, timeout: float) -> None:
        """Deliveries for at most `timeout` seconds, each to its consumer's callback."""
        with self._driver():
            self._open()
            assert self._connection is not None
            self._connection.process_data_events(time_limit=timeout)

    # -- membership --------------------------------------------------------------------------

    def _announce(self, member: Member) -> None:
        self._append(_Record(member.name, member.worker_id, member.seen_at))

    def _withdraw(self, member: Member) -> None:
        self._append(_Record(member.name, member.worker_id, time.time(), left=True))

    def _append(self, record: _Record) -> None:
        raw, stream = msgspec.json.encode(record), self._topology.members_stream
        self._repeated(lambda: self._stream().basic_publish("", stream, raw))

    def _stream(self) -> BlockingChannel:
        """The channel, the members stream declared on its connection."""
        channel = self._open()
        stream = self._topology.members_stream
        if stream not in self._declared:
            try:
                channel.queue_declare(
                    stream, durable=True, arguments=self._topology.members_arguments()
                )
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code != PRECONDITION_FAILED:
                    raise
                log.warning("RabbitMQ stream %s exists with other arguments: used as it is", stream)
                channel = self._open()
                channel.queue_declare(stream, passive=True)
            self._declared.add(stream)
        return channel

    def _members(self, since: float) -> Iterable[Member]:
        present: dict[tuple[str, str], Member] = {}
        for record in self._read(since):
            key = (record.name, record.worker_id)
            if record.left:
                present.pop(key, None)
            elif record.at >= since:
                present[key] = Member(record.name, record.worker_id, record.at)
        return list(present.values())

    def _read(self, since: float) -> list[_Record]:
        """Every record from `since` (Unix time) to the end: to a probe appended now."""

        def read() -> list[_Record]:
            self._stream()
            assert self._connection is not None
            stream = self._topology.members_stream
            return _read_stream(self._connection, stream, since, READ_WITHIN)

        return self._repeated(read)

    def close(self) -> None:
        self._forget()


def _read_stream(
    connection: pika.BlockingConnection, stream: str, since: float, within: float
) -> list[_Record]:
    reader = connection.channel()
    try:
        reader.basic_qos(prefetch_count=500)  # a stream consumer must set one
        probe = uuid.uuid4().hex.encode()
        records: list[_Record] = []
        done = False

        def received(channel: Any, method: Any, _props: Any, body: bytes) -> None:
            nonlocal done
            if done:
                return  # appended after the probe: left unacked, dropped with the channel
            channel.basic_ack(method.delivery_tag)
            if body == probe:
                done = True
                connection.add_callback_threadsafe(_nothing)  # wakes process_data_events
                return
            record = _decoded(body)
            if record is not None:
                records.append(record)

        start = datetime.fromtimestamp(since - 1, timezone.utc)
        reader._impl.basic_consume(stream, received, arguments={"x-stream-offset": start})
        reader.basic_publish("", stream, probe)
        deadline = time.monotonic() + within
        while not done and (left := deadline - time.monotonic()) > 0:
            connection.process_data_events(time_limit=left)
        if not done:
            raise BrokerUnavailable(f"rabbitmq control: {stream} not read within {within:g}s")
        return records
    finally:
        if reader.is_open:
            reader.close()


def _nothing() -> None:
    return None


def _decoded(body: bytes) -> _Record | None:
    try:
        return _RECORD.decode(body)
    except Exception:  # anyone may append to the stream: not a record, skipped
        return None
