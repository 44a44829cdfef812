"""Celery's side: the Redis or RabbitMQ broker (BENCH_BROKER_URL), the stock prefork pool,
results ignored."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import counter
from celery import Celery

app = Celery("bench", broker=os.environ["BENCH_BROKER_URL"])
app.conf.broker_connection_retry_on_startup = True
app.conf.task_default_queue = os.environ.get("BENCH_CELERY_QUEUE", "celery")


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
    cli = str(Path(sys.executable).parent / "celery")
    command = [cli, "-A", "celery_app", "worker", "-c", str(concurrency), "-l", "warning"]
    if per_child := os.environ.get("BENCH_MAX_TASKS_PER_CHILD"):
        command += ["--max-tasks-per-child", per_child]
    return command


def enqueue(count: int, bulk: bool) -> None:
    for _ in range(count):  # Celery's groups still publish one message per task
        incr.delay()


def send_ping() -> None:
    ping.delay()


def send_scans(count: int) -> None:
    for n in range(count):
        scan.delay(n)


def send_warm(count: int) -> None:
    for _ in range(count):
        warm.delay()
