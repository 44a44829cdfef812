"""Huey's side of suites 6 and 7: RedisHuey with results on and `notify_result=True` (a
waiting `get(blocking=True)` blocks in BLPOP instead of polling with back-off), the process
consumer.

    group    add.map((i, i) for i in range(n)): its ResultGroup's get(blocking=True)
    loop     add(i, i) for each i, then get(blocking=True) of each result
    chord    huey.enqueue(group([add.s(i, i) ...]).then(tsum)).get(blocking=True)"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from huey import RedisHuey, group

huey = RedisHuey(
    "fan",
    url=os.environ["BENCH_REDIS_URL"],
    results=True,
    notify_result=os.environ.get("BENCH_HUEY_NOTIFY") == "1",
)


@huey.task()
def add(x: int, y: int) -> int:
    return x + y


@huey.task()
def tsum(values: list[int]) -> int:
    return sum(values)


def by_group(count: int, timeout: float) -> list[int]:
    return list(add.map((i, i) for i in range(count)).get(blocking=True, timeout=timeout))


def by_loop(count: int, timeout: float) -> list[int]:
    sent = [add(i, i) for i in range(count)]
    return [result.get(blocking=True, timeout=timeout) for result in sent]


def by_chord(count: int, timeout: float) -> int:
    header = group([add.s(i, i) for i in range(count)]).then(tsum)
    return int(huey.enqueue(header).get(blocking=True, timeout=timeout))


FORMS: dict[str, Callable[[int, float], list[int]]] = {"group": by_group, "loop": by_loop}
CHORD: Callable[[int, float], int] | None = by_chord


def worker_command(concurrency: int) -> list[str]:
    consumer = str(Path(sys.executable).parent / "huey_consumer")
    return [consumer, f"{Path(__file__).stem}.huey", "-w", str(concurrency), "-k", "process",
            "-q"]  # fmt: skip
