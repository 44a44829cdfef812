"""Dramatiq's side of suite 6: the Redis broker with the Results middleware on Redis (a
blocking get waits in BLPOP), one thread in each of `concurrency` processes. Dramatiq has no
chord (a group's completion callback is not given the group's results): no suite 7.

    group    dramatiq.group(add.message(i, i) for ...).run(), then get_results(block=True)
    loop     add.send(i, i) for each i, then get_result(block=True) of each message"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

broker = RedisBroker(url=os.environ["BENCH_REDIS_URL"])
broker.add_middleware(Results(backend=RedisBackend(url=os.environ["BENCH_REDIS_URL"])))
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True)
def add(x: int, y: int) -> int:
    return x + y


def by_group(count: int, timeout: float) -> list[int]:
    sent = dramatiq.group(add.message(i, i) for i in range(count)).run()
    return list(sent.get_results(block=True, timeout=int(timeout * 1000)))


def by_loop(count: int, timeout: float) -> list[int]:
    sent = [add.send(i, i) for i in range(count)]
    return [m.get_result(block=True, timeout=int(timeout * 1000)) for m in sent]


FORMS: dict[str, Callable[[int, float], list[int]]] = {"group": by_group, "loop": by_loop}
CHORD: Callable[[int, float], int] | None = None


def worker_command(concurrency: int) -> list[str]:
    cli = str(Path(sys.executable).parent / "dramatiq")
    return [cli, Path(__file__).stem, "--processes", str(concurrency), "--threads", "1"]
