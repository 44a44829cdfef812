"""Events on the Redis result backend's server (the rules: `forkq.engines.contract.events`):
one stream, `events_key` (`forkq.engines.redis.keys`), entry field b = the body.

An event's offset is its stream entry id ("<ms>-<seq>"), which the server makes greater than
every id before it. Adding is one script call on the `Wire` (one round trip, one command to
pack and one reply to read, rather than one of each per event: a third of the CPU for a batch
of 100, client and server together), which runs one XADD per body, each with MAXLEN ~ kept:
the server drops the oldest whole nodes of the stream, so it keeps `kept` events and at most
a node more (100 entries by default). Reading is one XRANGE
from just after the offset (exclusive start). An entry another program added without a body
field reads as an empty body.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from redis.commands.core import Script

from forkq.engines.contract import (
    EventPage,
    StoredEvent,
    check_event_reading,
    check_events_kept,
)
from forkq.engines.redis.cluster_wire import AnyWire
from forkq.engines.redis.keys import events_key

_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_LARGEST = 2**64 - 1  # a stream id's parts are 64-bit unsigned
_BODY = b"b"

# KEYS[1] the stream   ARGV[1] how many to keep   ARGV[2..] the bodies, in order.
ADD = """
for i = 2, #ARGV do
  redis.call("XADD", KEYS[1], "MAXLEN", "~", ARGV[1], "*", "b", ARGV[i])
end
"""


def event_offset(after: str | None) -> str:
    """XRANGE's start for an offset: "-" (the oldest) for None, else just after the entry
    id; ValueError for anything but an id a stream can hold."""
    if not after:
        return "-"
    found = _ID.fullmatch(after)
    if found is None or max(int(found[1]), int(found[2])) > _LARGEST:
        raise ValueError(
            "an event offset on Redis is a stream entry id such as 1733150000000-0, "
            f"not {after[:40]!r}"
        )
    return f"({after}"


class RedisEvents:
    """The backend's events, on its `Wire` and key prefix."""

    def __init__(self, wire: Callable[[], AnyWire], prefix: str, add: Script) -> None:
        self._wire = wire
        self._add = add  # ADD, registered on the backend's client
        self.key = events_key(prefix)

    def add(self, bodies: Sequence[bytes], kept: int) -> None:
        check_events_kept(kept)
        if not bodies:
            return
        self._wire().script(self._add, (self.key,), (kept, *bodies))

    def read(self, after: str | None, limit: int) -> EventPage:
        check_event_reading(limit)
        start = event_offset(after)
        if start == f"({_LARGEST}-{_LARGEST}":
            return EventPage((), after or "")  # nothing can come after the largest id
        entries: Any = self._wire().call("XRANGE", self.key, start, "+", "COUNT", limit)
        found = tuple(StoredEvent(bytes(i).decode(), _body(fields)) for i, fields in entries)
        return EventPage(found, found[-1].offset if found else after or "")

    def last_offset(self) -> str | None:
        entries: Any = self._wire().call("XREVRANGE", self.key, "+", "-", "COUNT", 1)
        return bytes(entries[0][0]).decode() if entries else None


def _body(fields: Any) -> bytes:
    """The body field's value; b"" for an entry without one (another program's)."""
    if not isinstance(fields, list):
        return b""
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == _BODY:
            return bytes(fields[i + 1])
    return b""
