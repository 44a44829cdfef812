"""Events as a result backend keeps them: bytes in the order they were added, each with an
offset, capped, durable where the engine is.

    add_events(bodies, kept) ─► appended in one round trip or transaction, in order; then the
                                oldest go until at most `kept` remain (about: Redis trims a
                                stream by whole nodes)
    read_events(after, limit) ─► at most `limit` events added after offset `after` (None or
                                 "": from the oldest kept), oldest first, and the offset
                                 to give next
    last_event_offset() ─────► the newest event's offset (None while there is none): a
                                monitor that wants only what comes next starts from it

An offset is the engine's text (a number on SQLite and in memory, a stream entry id on Redis);
offsets of one store compare in the order their events were added, and a reader keeps the
last one it saw to go on from there after a restart. A reader whose offset fell behind the
cap gets the oldest kept, without error. A malformed offset (text a user typed) is a
ValueError that says what an offset looks like.

The bodies are opaque here: `forkq.events.codec` makes and reads them.
"""

from __future__ import annotations

import msgspec

#: How many events a store keeps unless the setting `events_kept` says otherwise.
EVENTS_KEPT = 100_000

#: The most events one `read_events` returns.
READ_MAX = 10_000


class StoredEvent(msgspec.Struct, frozen=True):
    offset: str
    body: bytes


class EventPage(msgspec.Struct, frozen=True):
    """What `read_events` found: the events (oldest first) and the offset to read after next
    time (the last event's, or the `after` given when there was none; "" for a store that
    was empty and read from the start, which reads from the start again)."""

    events: tuple[StoredEvent, ...]
    next: str


def check_event_reading(limit: int) -> None:
    """`read_events` takes a limit of 1 to `READ_MAX` (ValueError)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= READ_MAX:
        raise ValueError(f"read at most 1 to {READ_MAX} events at once, not {limit!r}")


def check_events_kept(kept: int) -> None:
    """`add_events` keeps at least one event (ValueError)."""
    if isinstance(kept, bool) or not isinstance(kept, int) or kept < 1:
        raise ValueError(f"events_kept must be a whole number >= 1, not {kept!r}")
