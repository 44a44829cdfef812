"""forkq's side of suites 6 and 7 (fan-out/fan-in, chord): tasks that return a value, results
stored. The broker is BENCH_BROKER_URL (Redis, RabbitMQ or SQLite); results go to the same
store unless FORKQ_RESULT_BACKEND names another (RabbitMQ's rows: Redis).

    group    group(add.s(i, i) for i in range(n)).apply_async().get()
    gather   add.delay(i, i) for each i, then app.gather(those results)
    loop     add.delay(i, i) for each i, then get() of each result
    chord    chord([add.s(i, i) ...], tsum.s()).apply_async().get()

A forkq without the workflow API (a baseline revision before it) offers the loop only."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from forkq import Forkq

try:
    from forkq import chord, group
except ImportError:  # a revision before the workflow API
    chord = group = None

app = Forkq("fan", broker=os.environ["BENCH_BROKER_URL"])


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def tsum(values: list[int]) -> int:
    return sum(values)


def by_group(count: int, timeout: float) -> list[int]:
    return list(group(add.s(i, i) for i in range(count)).apply_async().get(timeout=timeout))


def by_gather(count: int, timeout: float) -> list[int]:
    sent = [add.delay(i, i) for i in range(count)]
    return list(app.gather(sent, timeout=timeout))


def by_loop(count: int, timeout: float) -> list[int]:
    sent = [add.delay(i, i) for i in range(count)]
    return [result.get(timeout=timeout) for result in sent]


def by_chord(count: int, timeout: float) -> int:
    header = [add.s(i, i) for i in range(count)]
    return int(chord(header, tsum.s()).apply_async().get(timeout=timeout))


FORMS: dict[str, Callable[[int, float], list[int]]] = (
    {"group": by_group, "gather": by_gather, "loop": by_loop} if group else {"loop": by_loop}
)
CHORD: Callable[[int, float], int] | None = by_chord if chord else None


def worker_command(concurrency: int) -> list[str]:
    url = os.environ["BENCH_BROKER_URL"]
    return [sys.executable, "-m", "forkq", "worker", "-A", Path(__file__).stem, "--broker", url,
            "-c", str(concurrency), "-l", "warning"]  # fmt: skip
