"""Deliveries out of Redis replies: the fetch script's flat list and XREADGROUP's streams.

Entries may have been pushed by anyone (`XADD` straight into a stream): a junk start count is
0; an entry without a body is not delivered but handed back to be dead-lettered with a reason
(fetch.lua does the same with those it reads); the message codec judges the body later.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import msgspec

from forkq.engines.contract import Delivery
from forkq.engines.redis.keys import QueueKeys, Receipt

_MAX_STARTS = 1_000_000  # as entries.lua clamps them
_INTEGER = re.compile(rb"-?[0-9]{1,30}")
_UNPRINTABLE = re.compile(rb"[^\x20-\x7e]")


class Bodiless(msgspec.Struct, frozen=True):
    """An entry read for a consumer that has no body to run: to dead-letter with `reason`."""

    delivery: Delivery
    reason: str


def from_script(queue: str, reply: Sequence[Any]) -> list[Delivery]:
    """fetch.lua's entries: band, id, body, start count, four by four after its two heads."""
    return [
        _delivery(queue, int(band), entry_id, body, count(deliveries))
        for band, entry_id, body, deliveries in zip(*[iter(reply[2:])] * 4, strict=True)
    ]


def from_read(keys: Sequence[QueueKeys], reply: Any) -> tuple[list[Delivery], list[Bodiless]]:
    """XREADGROUP's entries, in the order of the streams asked for, and those without a body.
    RESP3 (redis-py 8's default) replies with a map, RESP2 with a list of pairs."""
    got, bodiless = [], []
    for stream, entries in reply.items() if isinstance(reply, dict) else reply or []:
        name = stream.decode()
        queue = next(k.queue for k in keys if name.startswith(k.tag))
        band = int(name.rsplit(":b", 1)[1])
        for entry_id, flat in entries:
            flat = flat or []
            fields = dict(reversed(list(zip(flat[::2], flat[1::2], strict=True))))
            body = fields.get(b"b", b"")
            delivery = _delivery(queue, band, entry_id, body, count(fields.get(b"d")))
            if body:
                got.append(delivery)
            else:
                bodiless.append(Bodiless(delivery, _no_body_reason(flat, b"b" in fields)))
    return got, bodiless


def count(raw: Any) -> int:
    """A start count from an entry anyone may have written: junk counts as 0."""
    if isinstance(raw, int):  # fetch.lua's counts, read already by entries.lua
        return min(_MAX_STARTS, max(0, raw))
    return integer_field(raw if isinstance(raw, bytes) else None, 0, _MAX_STARTS)


def integer_field(raw: bytes | None, low: int, high: int) -> int:
    """An integer field anyone may have written, clamped; junk (not decimal digits: "nan",
    "1e3", "") reads as `low`."""
    if raw is None or not _INTEGER.fullmatch(raw):
        return low
    return min(high, max(low, int(raw)))


def shown(raw: bytes) -> str:
    """Bytes anyone wrote, quoted for a reason: at most 40, anything but printable ASCII as
    "?" (as entries.lua shows them)."""
    text = _UNPRINTABLE.sub(b"?", raw[:40]).decode("ascii")
    return '"' + text + ("..." if len(raw) > 40 else "") + '"'


def _no_body_reason(flat: Sequence[bytes], empty: bool) -> str:
    if empty:
        return "malformed stream entry: empty body (field b)"
    if not flat:
        return "malformed stream entry: no body (field b); no fields"
    names = ", ".join(shown(name) for name in flat[:10:2]) + (", ..." if len(flat) > 10 else "")
    return f"malformed stream entry: no body (field b); its fields: {names}"


def _delivery(queue: str, band: int, entry_id: Any, body: Any, deliveries: int) -> Delivery:
    entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    payload = body if isinstance(body, bytes) else str(body).encode()
    return Delivery(Receipt.text(band, entry), queue, payload, deliveries + 1)
