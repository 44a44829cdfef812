"""Taking back what a whole dead worker held on Redis, for `forkq.engines.redis.session`.

A worker's master keeps its `worker:` key alive (`heartbeat`). When a whole worker dies (master
included), the key expires; any consumer of the same queue then releases the dead worker's
entries that have been idle for longer than lease_ttl (`release.lua` puts them back at the end
of their band). A long task is never taken from a live worker. Each consumer looks every
lease_ttl / 4, at its fetches (its `RecoveryClock` says when); one consumer per queue does the
work in each period (the one that sets the queue's `recovering` key first), so many consumers,
or a child forked per task, cost one SET per queue, not a scan each (on a server over
maxmemory, which refuses that SET, each consumer looks).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis

from forkq.engines.contract import Consumer
from forkq.engines.redis.keys import GROUP, QueueKeys, worker_key
from forkq.engines.redis.link import RedisLink


class DeadWorkerRecovery:
    def __init__(self, link: RedisLink, lease_ttl: float) -> None:
        self._link = link
        self._period_ms = max(1, int(lease_ttl * 1000 / 4))  # as RecoveryClock's period
        self._idle_ms = int(lease_ttl * 1000)

    def run(self, keys: list[QueueKeys]) -> None:
        """Release the entries of workers without a live `worker:` key, in these queues, unless
        another consumer has looked at them in this period."""
        client = self._link.client
        pipe = client.pipeline(transaction=False)
        for k in keys:
            pipe.set(k.recovering, 1, nx=True, px=self._period_ms)
        mine = [
            k for k, won in zip(keys, _won(pipe.execute(raise_on_error=False)), strict=True) if won
        ]
        if not mine:
            return
        pipe = client.pipeline(transaction=False)  # one round trip, not one a stream
        for k in mine:
            for stream in k.bands_high_first:
                pipe.xinfo_consumers(stream, GROUP)
        consumers = {c["name"].decode() for cs in pipe.execute() for c in cs if c["pending"]}
        workers = sorted({Consumer.worker_of(name) for name in consumers})
        pipe = client.pipeline(transaction=False)
        for worker in workers:
            pipe.exists(worker_key(self._link.prefix, worker))
        alive = {w for w, up in zip(workers, pipe.execute(), strict=True) if up}
        for name in consumers:
            if Consumer.worker_of(name) not in alive:
                for k in mine:
                    self._link.release(k, name, idle_ms=self._idle_ms, count_all=True)


def _won(replies: list[Any]) -> Iterator[bool]:
    """Whether each SET NX of a `recovering` key made this consumer the one to look. A server
    over maxmemory refuses the SET: every consumer then looks (releases go through on a full
    server, and what a dead worker held still runs); any other error reply is raised."""
    for reply in replies:
        if isinstance(reply, redis.exceptions.OutOfMemoryError):
            yield True
        elif isinstance(reply, Exception):
            raise reply
        else:
            yield bool(reply)
