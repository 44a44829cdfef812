"""Dramatiq's side: the Redis broker, one thread in each of `concurrency` processes. The
harness runs it twice: with its default prefetch and with `dramatiq_queue_prefetch=64`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import counter
import dramatiq
from dramatiq.brokers.redis import RedisBroker

dramatiq.set_broker(RedisBroker(url=os.environ["BENCH_REDIS_URL"]))


@dramatiq.actor
def incr() -> None:
    counter.incr()


@dramatiq.actor
def ping() -> None:
    counter.ping()


def worker_command(concurrency: int) -> list[str]:
    cli = str(Path(sys.executable).parent / "dramatiq")
    return [cli, "dramatiq_app", "--processes", str(concurrency), "--threads", "1"]


def enqueue(count: int, bulk: bool) -> None:
    if bulk:
        group = dramatiq.group(incr.message() for _ in range(count))
        group.run()
    else:
        for _ in range(count):
            incr.send()


def send_ping() -> None:
    ping.send()
