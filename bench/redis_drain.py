"""forkq on Redis: drain throughput, back-to-back latency and Redis commands per task.

Run: .venv/bin/python bench/redis_drain.py [--tasks 10000] [--rounds 3]

10,000 no-op tasks whose body is one Redis INCR, concurrency 2, results ignored: the workload
of the reference figures in issue 4 (Huey 1,700/s, tuned Dramatiq 2,200/s, Celery 440/s on this
kind of machine). Drain time runs from the worker's first INCR to its last. Latency: 200 tasks
sent one after another to an idle worker, each awaited with `get()`. Commands per task: Redis's
INFO commandstats over the drain, minus the task's own INCR and the benchmark's own reads;
commandstats also counts the commands Lua scripts run inside Redis, so this is commands
executed, not round trips. Medians over the rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from pathlib import Path

import redis

from forkq import Forkq
from forkq.demo.process import worker_process
from forkq.envelope import make_message

HERE = Path(__file__).resolve().parent
REDIS = "redis://127.0.0.1:6379/14"


def commands(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


def drain(tasks: int, client: redis.Redis) -> tuple[float, float]:
    url = f"{REDIS}?prefix=bench-{uuid.uuid4().hex[:8]}"
    app = Forkq("bench", broker=url)
    client.delete("bench:count")
    env = {"BENCH_COUNTER_URL": REDIS}
    with worker_process(
        "incr_app", url, "-c", "2", "--prefetch", "64", "-l", "warning", cwd=str(HERE), env=env
    ):
        app.send_task("incr_app.incr_with_result").get(timeout=60)  # the worker is serving
        client.set("bench:count", 0)
        queue = app.settings.default_queue
        messages = [make_message("incr_app.incr", [], {}, queue=queue) for _ in range(tasks)]
        before = commands(client)
        app.publish_many(messages)
        started = None
        while True:  # a benchmark's own clock: read the counter every millisecond
            done = int(client.get("bench:count") or 0)
            if started is None and done:
                started = time.perf_counter()
            if done >= tasks:
                break
            time.sleep(0.001)
        elapsed = time.perf_counter() - (started or time.perf_counter())
        spent = commands(client) - before
    app.close()
    # Not forkq's: the task's INCR, and the benchmark's own GETs of the counter.
    polls = elapsed / 0.001
    return tasks / elapsed, max(0.0, (spent - tasks - polls) / tasks)


def latency(client: redis.Redis, count: int = 200) -> list[float]:
    url = f"{REDIS}?prefix=bench-{uuid.uuid4().hex[:8]}"
    app = Forkq("bench", broker=url)
    env = {"BENCH_COUNTER_URL": REDIS}
    samples = []
    with worker_process("incr_app", url, "-c", "2", "-l", "warning", cwd=str(HERE), env=env):
        app.send_task("incr_app.incr_with_result").get(timeout=60)
        for _ in range(count):
            sent = time.perf_counter()
            app.send_task("incr_app.incr_with_result").get(timeout=30)
            samples.append((time.perf_counter() - sent) * 1000)
    app.close()
    return samples


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    client = redis.Redis.from_url(REDIS)
    rates, per_task, p50, p99 = [], [], [], []
    for n in range(options.rounds):
        rate, cmds = drain(options.tasks, client)
        lat = latency(client)
        rates.append(rate)
        per_task.append(cmds)
        p50.append(percentile(lat, 0.5))
        p99.append(percentile(lat, 0.99))
        print(
            f"round {n + 1}: {rate:,.0f} tasks/s, {cmds:.2f} commands/task, "
            f"latency p50 {p50[-1]:.2f} ms p99 {p99[-1]:.2f} ms",
            flush=True,
        )
    print(f"\nforkq on Redis, {options.tasks} INCR tasks, concurrency 2, {os.cpu_count()} CPUs")
    low, high = min(rates), max(rates)
    print(f"drain: median {statistics.median(rates):,.0f} tasks/s ({low:,.0f}-{high:,.0f})")
    print(f"forkq's own Redis commands per task: median {statistics.median(per_task):.2f}")
    print(f"latency p50: median {statistics.median(p50):.2f} ms", end="; ")
    print(f"p99: median {statistics.median(p99):.2f} ms")


if __name__ == "__main__":
    main()
