"""The body every system's benchmark tasks run: one Redis command, on a per-process client.

`incr` is the throughput task (one INCR of the counter the harness watches); `ping` is the
latency task (one LPUSH the client waits on with BLPOP). The client is made lazily in each
process, after fork, the same way for every system.
"""

from __future__ import annotations

import os

import redis

COUNTER = "bench:count"
DONE = "bench:done"

_client: redis.Redis | None = None
_pid = 0


def client() -> redis.Redis:
    global _client, _pid
    if _client is None or _pid != os.getpid():
        _client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
        _pid = os.getpid()
    return _client


def incr() -> None:
    client().incr(COUNTER)


def ping() -> None:
    client().lpush(DONE, 1)
