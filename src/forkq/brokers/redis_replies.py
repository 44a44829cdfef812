"""Deliveries out of Redis replies: the fetch script's flat list and XREADGROUP's streams.

Entries may have been pushed by anyone (`XADD` straight into a stream): a missing body is
empty, a junk start count is 0; the message codec judges the body later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from forkq.brokers.base import Delivery
from forkq.brokers.redis_keys import QueueKeys


def from_script(queue: str, reply: Sequence[Any]) -> list[Delivery]:
    """fetch.lua's entries: band, id, body, start count, four by four after its two heads."""
    return [
        _delivery(queue, int(band), entry_id, body, _count(deliveries))
        for band, entry_id, body, deliveries in zip(*[iter(reply[2:])] * 4, strict=True)
    ]


def from_read(keys: Sequence[QueueKeys], reply: Any) -> list[Delivery]:
    """XREADGROUP's entries, in the order of the streams asked for. RESP3 (redis-py 8's
    default) replies with a map, RESP2 with a list of pairs."""
    got = []
    for stream, entries in reply.items() if isinstance(reply, dict) else reply or []:
        name = stream.decode()
        queue = next(k.queue for k in keys if name.startswith(k.tag))
        band = int(name.rsplit(":b", 1)[1])
        for entry_id, flat in entries:
            fields = dict(zip(flat[::2], flat[1::2], strict=True)) if flat else {}
            deliveries = _count(fields.get(b"d"))
            got.append(_delivery(queue, band, entry_id, fields.get(b"b", b""), deliveries))
    return got


def _count(raw: Any) -> int:
    """A start count from an entry anyone may have written: junk counts as 0."""
    try:
        return max(0, int(raw))
    except (TypeError, ValueError):
        return 0


def _delivery(queue: str, band: int, entry_id: Any, body: Any, deliveries: int) -> Delivery:
    entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    payload = body if isinstance(body, bytes) else str(body).encode()
    return Delivery(f"{band}-{entry}", queue, payload, deliveries + 1)
