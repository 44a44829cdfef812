"""Events as bytes: MessagePack of a tagged record, read defensively.

An event store holds whatever anyone with access wrote: `decode` answers None for a body that
is not an event of this version (too big, not MessagePack, unknown tag or field types), so a
reader skips it and goes on.
"""

from __future__ import annotations

import math

import msgspec

from forkq.events.values import Event

#: The largest body `decode` reads; an event forkq makes is far smaller (a heartbeat of 256
#: children is about 40 KiB).
MAX_EVENT_BYTES = 256 * 1024

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Event)


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def decode(body: bytes) -> Event | None:
    if len(body) > MAX_EVENT_BYTES:
        return None
    try:
        event = _decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return event if math.isfinite(event.at) else None  # a time every reader can bucket
