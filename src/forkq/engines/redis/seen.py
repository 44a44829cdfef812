"""Heartbeats on Redis for `forkq.engines.redis.broker`: the worker's key (`prefix:worker:W`, whose
expiry releases a dead worker's holds) and which queues it consumes (`{prefix:Q}:workers`, a
sorted set scored by its latest beat in ms), in one round trip; `seen` reads the latter."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from forkq.engines.contract import SIGHTINGS_KEPT, Sighting
from forkq.engines.redis.client import Client
from forkq.engines.redis.keys import QueueKeys, worker_key


def beat(client: Client, prefix: str, worker: str, queues: Sequence[str], lease_ttl: float) -> None:
    now_ms, kept_ms = int(time.time() * 1000), int(SIGHTINGS_KEPT * 1000)
    pipe = client.pipeline(transaction=False)
    # PEXPIRE first: a server over maxmemory refuses the SET but not it, so the worker's key
    # lives on (its holds are not taken for a dead worker's) while the beat fails loudly.
    pipe.pexpire(worker_key(prefix, worker), int(lease_ttl * 1000))
    pipe.set(worker_key(prefix, worker), 1, px=int(lease_ttl * 1000))
    for queue in queues:
        key = QueueKeys(prefix, queue).workers
        pipe.zadd(key, {worker: now_ms})
        pipe.zremrangebyscore(key, "-inf", now_ms - kept_ms)  # workers gone a day
        pipe.pexpire(key, kept_ms)
    pipe.execute()


def seen(client: Client, prefix: str, queue: str, within: float) -> list[Sighting]:
    since_ms = int((time.time() - within) * 1000)
    found: Any = client.zrevrangebyscore(
        QueueKeys(prefix, queue).workers, "+inf", since_ms, withscores=True
    )
    return [Sighting(worker.decode(errors="replace"), ms / 1000) for worker, ms in found]
