"""forkq's side of the comparison. The broker comes from BENCH_BROKER_URL (Redis, RabbitMQ or
SQLite); results are ignored, as in every system here."""

from __future__ import annotations

import os
import sys

import counter

from forkq import Forkq

app = Forkq("bench", broker=os.environ["BENCH_BROKER_URL"])


@app.task(ignore_result=True)
def incr() -> None:
    counter.incr()


@app.task(ignore_result=True)
def ping() -> None:
    counter.ping()


@app.task(ignore_result=True)
def scan(part: int) -> None:
    counter.scan(part)


@app.task(ignore_result=True)
def warm() -> None:
    counter.warm()


def worker_command(concurrency: int) -> list[str]:
    url = os.environ["BENCH_BROKER_URL"]
    command = [sys.executable, "-m", "forkq", "worker", "-A", "forkq_app", "--broker", url,
               "-c", str(concurrency), "-l", "warning"]  # fmt: skip
    if per_child := os.environ.get("BENCH_MAX_TASKS_PER_CHILD"):
        command += ["--max-tasks-per-child", per_child]
    if megabytes := os.environ.get("BENCH_MAX_MEMORY_PER_CHILD"):
        command += ["--max-memory-per-child", megabytes]
    return command


def enqueue(count: int, bulk: bool) -> None:
    if bulk:
        for start in range(0, count, 1000):
            incr.map([()] * min(1000, count - start))
    else:
        for _ in range(count):
            incr.delay()


def send_ping() -> None:
    ping.delay()


def send_scans(count: int) -> None:
    for n in range(count):
        scan.delay(n)


def send_warm(count: int) -> None:
    for _ in range(count):
        warm.delay()
