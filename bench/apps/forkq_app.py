"""forkq's side of the comparison. The broker comes from BENCH_BROKER_URL (Redis, RabbitMQ or
SQLite); results are ignored, as in every system here.

BENCH_ARGS=plain or typed makes the throughput task `incr_args(n, at, key)`, sent a number, a
datetime and a UUID as their JSON forms (so that the typed task really converts them): plain
is unannotated with `typing=False` (argument checks and conversion off), typed is annotated
with the default `typing=True` (the call-site check in delay() and the conversion in the
child on). A forkq without the `typing` option (a baseline revision) runs both as plain."""

from __future__ import annotations

import os
import sys
import uuid
from datetime import datetime
from typing import Any

import counter

from forkq import Forkq
from forkq.task import TaskOptions

app = Forkq("bench", broker=os.environ["BENCH_BROKER_URL"])
ARGS = (7, "2026-01-02T03:04:05.678901+00:00", "1b4e28ba-2fa1-11d2-883f-0016d3cca427")


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


def incr_plain(n, at, key):  # unannotated: nothing to convert
    counter.incr()


def incr_typed(n: int, at: datetime, key: uuid.UUID) -> None:
    counter.incr()


def with_arguments(variant: str) -> Any:
    """The task BENCH_ARGS names, registered as incr_args; None without BENCH_ARGS."""
    if variant not in ("", "plain", "typed"):
        raise SystemExit(f"BENCH_ARGS={variant!r}: plain or typed")
    if not variant:
        return None
    if "typing" not in TaskOptions.__struct_fields__:  # a forkq without the option checks none
        return app.task(name="incr_args", ignore_result=True)(incr_plain)
    if variant == "plain":
        return app.task(name="incr_args", ignore_result=True, typing=False)(incr_plain)
    return app.task(name="incr_args", ignore_result=True)(incr_typed)


incr_args = with_arguments(os.environ.get("BENCH_ARGS", ""))


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
    task, args = (incr, ()) if incr_args is None else (incr_args, ARGS)
    if bulk:
        for start in range(0, count, 1000):
            task.map([args] * min(1000, count - start))
    else:
        for _ in range(count):
            task.delay(*args)


def send_ping() -> None:
    ping.delay()


def send_scans(count: int) -> None:
    for n in range(count):
        scan.delay(n)


def send_warm(count: int) -> None:
    for _ in range(count):
        warm.delay()
