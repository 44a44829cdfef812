"""Taking back what a whole dead worker held on Redis, for `forkq.engines.redis.broker`.

A worker's master keeps its `worker:` key alive (`heartbeat`). When a whole worker dies (master
included), the key expires; any consumer of the same queue then releases the dead worker's
entries that have been idle for longer than lease_ttl (`release.lua` puts them back at the end
of their band). A long task is never taken from a live worker. Each consumer looks every
lease_ttl / 4, at its fetches; one consumer per queue does the work in each period (the one that
sets the queue's `recovering` key first), so many consumers, or a child forked per task, cost
one SET per queue, not a scan each.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from forkq.engines.redis.keys import GROUP, QueueKeys, worker_key


class DeadWorkerRecovery:
    def __init__(
        self, client: redis.Redis, prefix: str, lease_ttl: float, release: Callable[..., Any]
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.lease_ttl = lease_ttl
        self._release = release  # the registered release.lua
        self.next_at = 0.0  # time.time() of the next look

    def run(self, keys: list[QueueKeys]) -> None:
        """Release the entries of workers without a live `worker:` key, in these queues, if a
        period has passed since the last look."""
        now = time.time()
        if now < self.next_at:
            return
        period_ms = max(1, int(self.lease_ttl * 1000 / 4))
        self.next_at = now + period_ms / 1000
        pipe = self.client.pipeline(transaction=False)
        for k in keys:
            pipe.set(k.recovering, 1, nx=True, px=period_ms)
        mine = [k for k, won in zip(keys, pipe.execute(), strict=True) if won]
        if not mine:
            return
        pipe = self.client.pipeline(transaction=False)  # one round trip, not one a stream
        for k in mine:
            for stream in k.bands_high_first:
                pipe.xinfo_consumers(stream, GROUP)
        consumers = {c["name"].decode() for cs in pipe.execute() for c in cs if c["pending"]}
        workers = sorted({name.split("/", 1)[0] for name in consumers})
        pipe = self.client.pipeline(transaction=False)
        for worker in workers:
            pipe.exists(worker_key(self.prefix, worker))
        alive = {w for w, up in zip(workers, pipe.execute(), strict=True) if up}
        idle_ms = int(self.lease_ttl * 1000)
        for name in consumers:
            if name.split("/", 1)[0] not in alive:
                for k in mine:
                    self._release(keys=k.bands_high_first, args=[GROUP, name, idle_ms, "1"])
