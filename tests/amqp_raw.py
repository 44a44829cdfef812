"""Publishing straight into forkq's RabbitMQ queues, as anyone with access to the vhost could:
properties encoded byte by byte, so that headers can hold what pika itself would never
encode (doubles, huge timestamps, tables nested past Python's recursion limit, non-UTF-8
keys and strings, every AMQP field type RabbitMQ accepts).

A field value is its encoding (`long(5)`, `string(b"x")`, `nested(600)`...); a table is a
list of (key, value) byte pairs. RabbitMQ 3.10 itself refuses a publish whose headers hold a
NaN or infinite double or the type 'U' (it closes the connection with 541 INTERNAL_ERROR), so
those never reach a queue and are not made here.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import pika

from forkq.engines.amqp.reading import ReadingConnection

Table = Sequence[tuple[bytes, bytes]]


def table(items: Table) -> bytes:
    body = b"".join(struct.pack("B", len(key)) + key + value for key, value in items)
    return struct.pack(">I", len(body)) + body


def long(value: int) -> bytes:
    return b"l" + struct.pack(">q", value)


def short(value: int) -> bytes:
    return b"s" + struct.pack(">h", value)


def double(value: float) -> bytes:
    return b"d" + struct.pack(">d", value)


def decimal(places: int, raw: int) -> bytes:
    return b"D" + struct.pack(">Bi", places, raw)


def string(value: bytes) -> bytes:
    return b"S" + struct.pack(">I", len(value)) + value


def raw_bytes(value: bytes) -> bytes:
    return b"x" + struct.pack(">I", len(value)) + value


def boolean(value: bool) -> bytes:
    return b"t" + struct.pack("B", value)


def timestamp(seconds: int) -> bytes:
    return b"T" + struct.pack(">Q", seconds)


def void() -> bytes:
    return b"V"


def array(values: Sequence[bytes]) -> bytes:
    body = b"".join(values)
    return b"A" + struct.pack(">I", len(body)) + body


def field_table(items: Table) -> bytes:
    return b"F" + table(items)


def nested(depth: int) -> bytes:
    value = void()
    for _ in range(depth):
        value = field_table([(b"a", value)])
    return value


class RawProperties(pika.BasicProperties):  # type: ignore[misc]
    """Properties sent exactly as given: `headers_table` is an encoded table (see `table`)."""

    def __init__(
        self,
        headers_table: bytes | None = None,
        priority: int | None = None,
        *,
        content_type: bytes | None = None,
        message_id: bytes | None = None,
    ) -> None:
        super().__init__()
        self.headers_table = headers_table
        self.priority = priority
        self.content_type = content_type
        self.message_id = message_id

    def encode(self) -> list[bytes]:
        flags, pieces = 0, []
        if self.content_type is not None:
            flags |= pika.BasicProperties.FLAG_CONTENT_TYPE
            pieces.append(struct.pack("B", len(self.content_type)) + self.content_type)
        if self.headers_table is not None:
            flags |= pika.BasicProperties.FLAG_HEADERS
            pieces.append(self.headers_table)
        flags |= pika.BasicProperties.FLAG_DELIVERY_MODE
        pieces.append(struct.pack("B", 2))  # persistent
        if self.priority is not None:
            flags |= pika.BasicProperties.FLAG_PRIORITY
            pieces.append(struct.pack("B", self.priority))
        if self.message_id is not None:
            flags |= pika.BasicProperties.FLAG_MESSAGE_ID
            pieces.append(struct.pack("B", len(self.message_id)) + self.message_id)
        return [struct.pack(">H", flags), *pieces]


class RawPublisher:
    """A plain pika connection of the test's own, publishing with confirms."""

    def __init__(self, url: str) -> None:
        # forkq's reading connection: redeliver() takes messages pika alone could not read
        parameters = pika.URLParameters(url.split("?")[0])
        self.connection = pika.BlockingConnection(parameters, _impl_class=ReadingConnection)
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()

    def publish(self, amqp_queue: str, body: bytes, properties: RawProperties) -> None:
        self.channel.basic_publish("", amqp_queue, body, properties)

    def redeliver(self, amqp_queue: str, count: int) -> None:
        """Take `count` messages without acking, then give them back: RabbitMQ marks them
        redelivered, as when their holder died."""
        channel = self.connection.channel()
        for _ in range(count):
            method, _, _ = channel.basic_get(amqp_queue)
            assert method is not None
        channel.close()

    def close(self) -> None:
        self.connection.close()
