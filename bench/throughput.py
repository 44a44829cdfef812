"""Suites 1, 2, 3 and 5 (throughput, latency, fork per task, start-up, commands per task):
one round of a system, the MONITOR pass, and their console table; compare.py's docstring
describes the method."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import redis
from harness import (
    APPS,
    DB,
    REDIS,
    System,
    clear,
    count_commands,
    drive,
    redis_monitor,
    run_script,
    server_cpu,
    tree_cpu_seconds,
    worker,
)
from report import FEATURES, cell, feature_ratios, reference_for
from rich.console import Console
from rich.table import Table
from systems import FLOOR

COUNTER, DONE = "bench:count", "bench:done"
CONCURRENCY = 2
DRAIN_TIMEOUT = 600.0


@dataclass
class Runs:
    """Every figure of one system, one entry per round."""

    drain: list[float] = field(default_factory=list)
    startup: list[float] = field(default_factory=list)  # launch to first task done, seconds
    enqueue: list[float] = field(default_factory=list)
    bulk_enqueue: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    redis_cpu_us: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p90: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    gap_p50: list[float] = field(default_factory=list)
    gap_p90: list[float] = field(default_factory=list)
    gap_p99: list[float] = field(default_factory=list)
    commands: float | None = None
    scripted: float | None = None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wait_count(client: redis.Redis, at_least: int, deadline: float) -> tuple[int, float]:
    """Poll the counter every 2 ms (the harness's own clock) until it reaches `at_least`."""
    while True:
        now = time.perf_counter()
        done = int(client.get(COUNTER) or 0)
        if done >= at_least:
            return done, now
        if now > deadline:
            raise TimeoutError(f"{done} of {at_least} tasks done before the deadline")
        time.sleep(0.002)


def floor_round(system: System, tasks: int, runs: Runs) -> None:
    figures = run_script(system, APPS / "forkfloor.py", str(tasks), timeout=DRAIN_TIMEOUT)
    runs.drain.append(figures["drain"])
    runs.cpu_us.append(figures["cpu_us"])


def one_round(
    system: System, tasks: int, samples: int, gaps: int, runs: Runs, log: IO[bytes]
) -> None:
    if system.label == FLOOR:
        floor_round(system, tasks, runs)
        return
    client = redis.Redis.from_url(REDIS)
    if system.bulk:
        clear(system)
        runs.bulk_enqueue.append(tasks / drive(system, "enqueue", str(tasks), "--bulk")["seconds"])
    clear(system)
    runs.enqueue.append(tasks / drive(system, "enqueue", str(tasks))["seconds"])
    with worker(system, CONCURRENCY, log) as process:
        deadline = time.perf_counter() + DRAIN_TIMEOUT
        first, started = wait_count(client, 1, deadline)
        runs.startup.append(started - process.launched_at)
        cpu_before, redis_before = tree_cpu_seconds(process.pid), server_cpu(client)
        _, finished = wait_count(client, tasks, deadline)
        cpu = tree_cpu_seconds(process.pid) - cpu_before
        redis_cpu = server_cpu(client) - redis_before
        runs.drain.append((tasks - first) / (finished - started))
        runs.cpu_us.append(cpu / (tasks - first) * 1e6)
        runs.redis_cpu_us.append(redis_cpu / (tasks - first) * 1e6)
        if not system.measures_latency:
            return
        back_to_back = drive(system, "latency", str(samples), "0")["ms"]
        runs.p50.append(percentile(back_to_back, 0.5))
        runs.p90.append(percentile(back_to_back, 0.9))
        runs.p99.append(percentile(back_to_back, 0.99))
        if gaps:
            gapped = drive(system, "latency", str(gaps), "100")["ms"]
            runs.gap_p50.append(percentile(gapped, 0.5))
            runs.gap_p90.append(percentile(gapped, 0.9))
            runs.gap_p99.append(percentile(gapped, 0.99))
    client.close()


def count_pass(system: System, tasks: int, runs: Runs, log: IO[bytes], scratch: Path) -> None:
    """The throughput workload under MONITOR, from the first enqueue to the last completion,
    the worker's start included."""
    client = redis.Redis.from_url(REDIS)
    clear(system)
    trace = scratch / f"{system.label}.monitor"
    with redis_monitor(trace):
        drive(system, "enqueue", str(tasks))
        with worker(system, CONCURRENCY, log):
            wait_count(client, tasks, time.perf_counter() + DRAIN_TIMEOUT)
    ignore = (f'"{COUNTER}"', '"FLUSHDB"')  # the task bodies and the harness's reads
    sent, scripted = count_commands(trace, DB, ignore)
    runs.commands, runs.scripted = sent / tasks, scripted / tasks
    client.close()


def spread(values: list[float], fmt: str) -> str:
    return cell(values, fmt, dash="-")


def report(results: dict[str, Runs], console: Console) -> None:
    table = Table(title=f"{CONCURRENCY} workers, results ignored: medians (min-max)")
    columns = ("system", "drain/s", "start s", "enqueue/s", "bulk/s", "CPU µs/task",
               "Redis µs/task", "p50 ms", "p90 ms", "p99 ms", "gap p50", "gap p90", "gap p99",
               "cmds/task")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for label, r in results.items():
        table.add_row(
            label,
            spread(r.drain, ",.0f"),
            spread(r.startup, ".2f"),
            spread(r.enqueue, ",.0f"),
            spread(r.bulk_enqueue, ",.0f"),
            spread(r.cpu_us, ",.0f"),
            spread(r.redis_cpu_us, ",.0f"),
            spread(r.p50, ".2f"),
            spread(r.p90, ".2f"),
            spread(r.p99, ".2f"),
            spread(r.gap_p50, ".2f"),
            spread(r.gap_p90, ".2f"),
            spread(r.gap_p99, ".2f"),
            "-" if r.commands is None else f"{r.commands:.2f} (+{r.scripted:.1f} in Lua)",
        )
    console.print(table)
    for label, r in results.items():
        reference = reference_for(label, results)
        ours = results.get(reference)
        if ours is None or label.startswith("forkq") or not (r.drain and ours.drain):
            continue
        drain = statistics.median(ours.drain) / statistics.median(r.drain)
        text = f"{reference} / {label}: drain x{drain:.2f}"
        if r.p50 and ours.p50:
            text += f", latency p50 x{statistics.median(ours.p50) / statistics.median(r.p50):.2f}"
        console.print(text)
    for on, off in FEATURES:
        if on in results and off in results:
            cells = feature_ratios(vars(results[on]), vars(results[off]))
            figures = [f"{heading} x{ratio:.3f}" for heading, ratio in cells if ratio]
            console.print(f"{on} ÷ {off}: " + ", ".join(figures))
