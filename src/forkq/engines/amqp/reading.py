"""Reading what RabbitMQ delivers, defensively, for `forkq.engines.amqp.session`. Anyone who
may publish to the vhost can put any body, headers and properties into forkq's queues; each
message must end run or dead-lettered with a reason, never crash a child or go round forever.

- Properties pika cannot decode (a timestamp past the year 9999, tables nested deeper than
  Python's recursion limit): pika would drop the connection, and RabbitMQ would redeliver
  the message to the next consumer, forever. `ReadingConnection` hands such a message on with
  `UnreadableProperties` instead, and the consumer's session dead-letters it.
- forkq's own headers must be as forkq writes them: x-forkq-starts a count (0 if absent),
  x-forkq-due an integer time in ms (absent: due now; in the past: due now). Anything else,
  or a due time more than `MAX_DELAY_MS` ahead, is refused with a reason. Every other
  header is ignored, and dropped when forkq publishes the message again.
- Priority: absent counts as 0, above 9 as 9 (RabbitMQ orders it so too).
"""

from __future__ import annotations

import reprlib
import struct
import time
from datetime import datetime, timezone
from typing import Any

import msgspec
import pika
import pika.frame
import pika.spec

from forkq.engines.amqp.topology import MAX_DELAY_MS, MAX_PRIORITY, YEAR_MS

MAX_STARTS = 2**31 - 1  # more than any max_deliveries; starts + 1 still fits the header
_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = _SHOWN.maxlong = 60


class UnreadableProperties(pika.BasicProperties):  # type: ignore[misc]
    """A message's properties pika failed to decode: none of them is known."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class ReadingConnection(pika.SelectConnection):  # type: ignore[misc]
    """pika's connection, reading a content header it cannot decode as `UnreadableProperties`
    (the header frame's size is still known, so the body is read as usual)."""

    def _read_frame(self) -> tuple[int, Any]:
        return read_frame(self._frame_buffer)


def read_frame(data: bytes) -> tuple[int, Any]:
    try:
        return pika.frame.decode_frame(data)  # type: ignore[no-any-return]
    except Exception as exc:  # whatever decoding a publisher's properties raised
        kind, channel, size = struct.unpack_from(">BHL", data)
        if kind != pika.spec.FRAME_HEADER:
            raise  # the server's own frames: a real protocol error
        end = pika.spec.FRAME_HEADER_SIZE + size + pika.spec.FRAME_END_SIZE
        if len(data) < end or data[end - 1] != pika.spec.FRAME_END:
            raise  # not a whole frame, or the stream lost its framing: not this message's
        _class, _weight, body_size = struct.unpack_from(">HHQ", data, pika.spec.FRAME_HEADER_SIZE)
        reason = f"unreadable AMQP properties ({type(exc).__name__}: {_SHOWN.repr(str(exc))})"
        return end, pika.frame.Header(channel, body_size, UnreadableProperties(reason))


class Message(msgspec.Struct):
    """A delivered message, with what `read_headers` found in its properties."""

    queue: str  # forkq queue name
    tag: int
    body: bytes
    priority: int  # 0-9
    redelivered: bool
    starts: int  # x-forkq-starts
    due_ms: int | None  # x-forkq-due
    refused: str | None  # why it cannot run, if its properties say so


class Headers(msgspec.Struct, frozen=True):
    starts: int = 0  # times a process started it and died
    due_ms: int | None = None  # when it may run (ms since the epoch); None: now
    refused: str | None = None  # why it cannot run: it is dead-lettered with this reason


def message_from(queue: str, method: Any, properties: pika.BasicProperties, body: bytes) -> Message:
    """`method`: the basic.deliver or basic.get-ok that brought it."""
    read = read_headers(properties, int(time.time() * 1000))
    priority = priority_of(properties)
    tag, redelivered = method.delivery_tag, bool(method.redelivered)
    return Message(queue, tag, body, priority, redelivered, read.starts, read.due_ms, read.refused)


def read_headers(properties: pika.BasicProperties, now_ms: int) -> Headers:
    if isinstance(properties, UnreadableProperties):
        return Headers(refused=properties.reason)
    headers = properties.headers if isinstance(properties.headers, dict) else {}
    starts = headers.get("x-forkq-starts", 0)
    if not _is_int(starts) or not 0 <= starts <= MAX_STARTS:
        return Headers(refused=f"malformed AMQP header: x-forkq-starts {shown(starts)}")
    due = headers.get("x-forkq-due")
    if due is None:
        return Headers(starts)
    if not _is_int(due):
        return Headers(refused=f"malformed AMQP header: x-forkq-due {shown(due)}")
    if due > now_ms + MAX_DELAY_MS:
        years = MAX_DELAY_MS // YEAR_MS
        return Headers(refused=f"due {readable_ms(due)}, more than {years} years ahead")
    return Headers(starts, due)


def priority_of(properties: pika.BasicProperties) -> int:
    priority = properties.priority
    return min(MAX_PRIORITY, priority) if _is_int(priority) and priority > 0 else 0


def readable_ms(ms: int) -> str:
    """A time in ms since the epoch as a date, or in years where no date can show it."""
    try:
        return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError):
        return f"{ms / YEAR_MS:.3g} years after 1970"


def shown(value: object) -> str:
    """A header's value, short and typed: what was found where a number should be."""
    return f"{_SHOWN.repr(value)} ({type(value).__name__})"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
