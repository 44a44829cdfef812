"""The body every system's benchmark tasks run: one Redis command, on a per-process client.

`incr` is the throughput task (one INCR of the counter the harness watches); `ping` is the
latency task (one LPUSH the client waits on with BLPOP). The memory suite's `scan` reads one
part of the preloaded structure (bigdata) and then counts itself; its `warm` marks which
process ran it, so the harness knows every child has started. The client is made lazily in
each process, after fork, the same way for every system.
"""

from __future__ import annotations

import os
import time

import bigdata
import redis

COUNTER = "bench:count"
DONE = "bench:done"
WARM = "bench:warm"  # warm-up tasks done
RUNNERS = "bench:runners"  # pids of the long-lived processes that ran a task
PIDS = "bench:pids"  # pids of the processes that ran a scan
WARM_PIDS = "bench:warm:pids"  # pids of the processes that ran a warm-up task
WARM_SECONDS = 0.05  # long enough that a wave of warm-ups spreads over idle children

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


def _runner() -> int:
    """The long-lived process running tasks: this one, or for RQ (BENCH_FORK_PER_TASK) the
    worker that forked this work horse."""
    return os.getppid() if os.environ.get("BENCH_FORK_PER_TASK") else os.getpid()


def scan(part: int) -> None:
    bigdata.scan(part)
    pipe = client().pipeline(transaction=False)  # one round trip, as for incr
    pipe.sadd(PIDS, os.getpid()).sadd(RUNNERS, _runner()).incr(COUNTER)
    pipe.execute()


def warm() -> None:
    time.sleep(WARM_SECONDS)
    pipe = client().pipeline(transaction=False)
    pipe.sadd(WARM_PIDS, os.getpid()).sadd(RUNNERS, _runner()).incr(WARM)
    pipe.execute()
