"""Celery's side of suites 6 and 7: the Redis or RabbitMQ broker (BENCH_BROKER_URL), its Redis
result backend (BENCH_REDIS_URL), the stock prefork pool.

    group    group(add.s(i, i) for i in range(n))().get()
    loop     add.delay(i, i) for each i, then get() of each result
    chord    chord(add.s(i, i) for i in range(n))(tsum.s()).get()"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from celery import Celery, chord, group

app = Celery("fan", broker=os.environ["BENCH_BROKER_URL"], backend=os.environ["BENCH_REDIS_URL"])
app.conf.broker_connection_retry_on_startup = True
app.conf.task_default_queue = os.environ.get("BENCH_CELERY_QUEUE", "celery")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def tsum(values: list[int]) -> int:
    return sum(values)


def by_group(count: int, timeout: float) -> list[int]:
    return list(group(add.s(i, i) for i in range(count))().get(timeout=timeout))


def by_loop(count: int, timeout: float) -> list[int]:
    sent = [add.delay(i, i) for i in range(count)]
    return [result.get(timeout=timeout) for result in sent]


def by_chord(count: int, timeout: float) -> int:
    return int(chord(add.s(i, i) for i in range(count))(tsum.s()).get(timeout=timeout))


FORMS: dict[str, Callable[[int, float], list[int]]] = {"group": by_group, "loop": by_loop}
CHORD: Callable[[int, float], int] | None = by_chord


def worker_command(concurrency: int) -> list[str]:
    cli = str(Path(sys.executable).parent / "celery")
    return [cli, "-A", Path(__file__).stem, "worker", "-c", str(concurrency), "-l", "warning"]
