"""The benchmark app of the peers' reference figures: a task whose body is one Redis INCR."""

from __future__ import annotations

import os

import redis

from forkq import Forkq

app = Forkq("incr_app")
_counter: redis.Redis | None = None


@app.on_after_fork
def connect() -> None:
    global _counter
    _counter = redis.Redis.from_url(os.environ["BENCH_COUNTER_URL"])


@app.task(ignore_result=True)
def incr() -> None:
    assert _counter is not None
    _counter.incr("bench:count")


@app.task
def incr_with_result() -> None:
    assert _counter is not None
    _counter.incr("bench:count")
