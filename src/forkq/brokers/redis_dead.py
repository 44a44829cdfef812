"""Dead letters on Redis for `forkq.brokers.redis`: one stream per queue,
`{prefix:queue}:dead` (settle.lua adds to it), whose entries carry the body (`b`), the reason
(`r`), when the message failed in ms (`t`) and its priority (`p`). A letter's receipt is
`<entry id>@<queue>`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from forkq.brokers.base import DeadLetter
from forkq.brokers.redis_keys import QueueKeys


def read_dead(
    client: redis.Redis, prefix: str, queues: Sequence[str], limit: int
) -> list[DeadLetter]:
    """The oldest `limit` letters of these queues, oldest first."""
    letters: list[DeadLetter] = []
    for queue in queues:
        entries: Any = client.xrange(QueueKeys(prefix, queue).dead, count=limit)
        for entry_id, f in entries:
            receipt = f"{entry_id.decode()}@{queue}"
            reason = f[b"r"].decode(errors="replace")
            letters.append(
                DeadLetter(receipt, queue, f[b"b"], reason, int(f[b"t"]) / 1000, int(f[b"p"]))
            )
    return sorted(letters, key=lambda d: d.failed_at)[:limit]


def delete_dead(client: redis.Redis, prefix: str, letter: DeadLetter) -> None:
    client.xdel(QueueKeys(prefix, letter.queue).dead, letter.receipt.split("@", 1)[0])


def purge_dead_letters(client: redis.Redis, prefix: str, queues: Sequence[str]) -> int:
    """Delete every letter of these queues; returns how many there were."""
    streams = [QueueKeys(prefix, queue).dead for queue in queues]
    count = sum(int(client.xlen(stream)) for stream in streams)
    for stream in streams:
        client.delete(stream)
    return count
