"""Huey's side: RedisHuey with its blocking reads, results off, the process consumer (which
imports this module once and forks its workers, so it preloads)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import counter
from huey import RedisHuey

huey = RedisHuey("bench", url=os.environ["BENCH_REDIS_URL"], results=False)


@huey.task()
def incr() -> None:
    counter.incr()


@huey.task()
def ping() -> None:
    counter.ping()


@huey.task()
def scan(part: int) -> None:
    counter.scan(part)


@huey.task()
def warm() -> None:
    counter.warm()


def worker_command(concurrency: int) -> list[str]:
    consumer = str(Path(sys.executable).parent / "huey_consumer")
    return [consumer, "huey_app.huey", "-w", str(concurrency), "-k", "process", "-q"]


def enqueue(count: int, bulk: bool) -> None:
    for _ in range(count):  # Huey has no bulk enqueue
        incr()


def send_ping() -> None:
    ping()


def send_scans(count: int) -> None:
    for n in range(count):
        scan(n)


def send_warm(count: int) -> None:
    for _ in range(count):
        warm()
