"""Dramatiq's side: the Redis broker, one thread in each of `concurrency` processes. The
harness runs it twice: with its default prefetch and with `dramatiq_queue_prefetch=64`.

Dramatiq's CLI forks its worker processes first and imports this module in each of them, so
nothing is shared; with BENCH_PRELOAD (the memory suite) the command goes through preload.py,
which imports this module in the parent before Dramatiq forks, as users who preload do."""

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


@dramatiq.actor
def scan(part: int) -> None:
    counter.scan(part)


@dramatiq.actor
def warm() -> None:
    counter.warm()


def worker_command(concurrency: int) -> list[str]:
    args = ["dramatiq_app", "--processes", str(concurrency), "--threads", "1"]
    if os.environ.get("BENCH_PRELOAD"):
        return [sys.executable, str(Path(__file__).with_name("preload.py")), "dramatiq_app",
                "dramatiq", *args]  # fmt: skip
    return [str(Path(sys.executable).parent / "dramatiq"), *args]


def enqueue(count: int, bulk: bool) -> None:
    if bulk:
        group = dramatiq.group(incr.message() for _ in range(count))
        group.run()
    else:
        for _ in range(count):
            incr.send()


def send_ping() -> None:
    ping.send()


def send_scans(count: int) -> None:
    for n in range(count):
        scan.send(n)


def send_warm(count: int) -> None:
    for _ in range(count):
        warm.send()
