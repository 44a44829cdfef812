"""Dead letters on Redis for `forkq.engines.redis.broker`: one stream per queue,
`{prefix:queue}:dead` (settle.lua adds to it), whose entries carry the body (`b`), the reason
(`r`), when the message failed in ms (`t`) and its priority (`p`). A letter's receipt is
`<entry id>@<queue>`.

Letters are read as anyone may have written them (`XADD` straight into the stream): a missing
body is empty, a missing reason says so, a junk time is 0 and a junk priority 0."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Any

from forkq.engines.contract import LAST_MOMENT, DeadLetter
from forkq.engines.redis.client import Client
from forkq.engines.redis.keys import QueueKeys
from forkq.engines.redis.replies import integer_field

_LATEST_MS = int(LAST_MOMENT * 1000)
# A stream entry's id as XADD makes it, each part within what Redis reads (below 2**64).
_ENTRY_ID = re.compile(r"[0-9]{1,19}-[0-9]{1,19}")


def read_dead(client: Client, prefix: str, queues: Sequence[str], limit: int) -> list[DeadLetter]:
    """The oldest `limit` letters of these queues, oldest first."""
    letters: list[DeadLetter] = []
    for queue in queues:
        entries: Any = client.xrange(QueueKeys(prefix, queue).dead, count=limit)
        for entry_id, fields in entries:
            letters.append(_letter(f"{entry_id.decode()}@{queue}", queue, fields or {}))
    return sorted(letters, key=lambda d: d.failed_at)[:limit]


def _letter(receipt: str, queue: str, fields: dict[bytes, bytes]) -> DeadLetter:
    reason = fields.get(b"r", b"").decode(errors="replace") or "(no reason stored)"
    failed_ms = integer_field(fields.get(b"t"), 0, _LATEST_MS)
    priority = integer_field(fields.get(b"p"), 0, 9)
    return DeadLetter(receipt, queue, fields.get(b"b", b""), reason, failed_ms / 1000, priority)


def delete_dead(client: Client, prefix: str, letter: DeadLetter) -> None:
    client.xdel(QueueKeys(prefix, letter.queue).dead, letter.receipt.split("@", 1)[0])


def delete_dead_letters(client: Client, prefix: str, receipts: Collection[str]) -> int:
    """XDEL of each receipt's entry from its queue's stream; how many were there."""
    by_queue: dict[str, list[str]] = {}
    for receipt in receipts:
        entry_id, at, queue = receipt.partition("@")
        if at and queue and _ENTRY_ID.fullmatch(entry_id):
            by_queue.setdefault(queue, []).append(entry_id)
    return sum(int(client.xdel(QueueKeys(prefix, q).dead, *ids)) for q, ids in by_queue.items())


def purge_dead_letters(client: Client, prefix: str, queues: Sequence[str]) -> int:
    """Delete every letter of these queues; returns how many there were."""
    streams = [QueueKeys(prefix, queue).dead for queue in queues]
    count = sum(int(client.xlen(stream)) for stream in streams)
    for stream in streams:
        client.delete(stream)
    return count
