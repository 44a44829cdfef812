"""Suites 6 and 7, fan-out/fan-in and chords: tasks that return a value, results stored.

Fan-out (suite 6): N `add(i, i)` tasks are sent and all their results gathered, timed from the
first send to the last result in the client's hands, in each form a system offers: its own
fan-out API (group: Celery's `group(...)().get()`, Huey's `task.map()` and its ResultGroup's
`get(blocking=True)`, Dramatiq's `group(...).run()` and `get_results(block=True)`, forkq's
`group(...).apply_async().get()`), for forkq also `delay()` of each task then one
`app.gather(results)` (gather), and in every system `delay()` of each task then `get()` of each
result, one after another (loop). Rates are tasks per second of the whole fan-out and gather.
Chord (suite 7): a chord of M such tasks whose body sums their results, timed from the first
send to the body's result in the client's hands; Celery's chords count their header on its
Redis result backend, Huey's (3.x) in its Redis storage; Dramatiq has none (a group's
completion callback is not given the results). RQ is left out: it has no way to gather
results but one job at a time, and its fork per job would be what it measured.

Every system runs its worker at concurrency 2 (prefork, processes; Dramatiq one thread per
process) with the stock result store on the same Redis database as the rest of the run:
forkq's Redis backend (forkq-rabbitmq: RabbitMQ broker, results in Redis; forkq-sqlite: broker
and results in one SQLite file), Celery's Redis result backend (celery-rabbitmq: RabbitMQ
broker), Huey's RedisHuey (huey: a waiting `get` polls with back-off, Huey's default;
huey-notify: `notify_result=True`, it blocks in BLPOP), Dramatiq's Results middleware on
Redis. The apps are bench/apps/fan_*.py.
Each round, per system in a new random order: the store is cleared, the worker started, and
each form (in a random order) and then the chord are run by a client process of their own,
each after an untimed fan-out (or chord) of 4 that opens its connections and waits out the
worker's start; every result is checked. Figures are medians over rounds (min-max). CPU
per task, for each form: the client's process over the timed fan-out; the worker's process
tree and the Redis server over the whole client call (its start and warm-up of 4 tasks
included; RabbitMQ's own CPU is not counted, nor SQLite's, which is the worker's and the
client's).
"""

from __future__ import annotations

import argparse
import os
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import redis
from harness import (
    AMQP,
    REDIS,
    Interpreters,
    System,
    clear,
    drive,
    server_cpu,
    tree_cpu_seconds,
    worker,
)
from report import cell
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

CONCURRENCY = 2
TIMEOUT = 600.0  # a get's, in the client: the slowest system's whole fan-out fits
FORMS = ("group", "gather", "loop")  # the record's keys, in the page's order


@dataclass
class FanRuns:
    """One system's figures, one entry per round: tasks/s per form, seconds per chord."""

    group: list[float] = field(default_factory=list)
    gather: list[float] = field(default_factory=list)
    loop: list[float] = field(default_factory=list)
    chord: list[float] = field(default_factory=list)
    load: list[float] = field(default_factory=list)  # 1-minute load average as a round began
    # per form, one [client, worker, Redis] per round: CPU µs per task
    cpu: dict[str, list[list[float]]] = field(default_factory=dict)


def fanout_systems(pythons: Interpreters, sqlite: Path) -> list[System]:
    forkq, peers = pythons.forkq, pythons.peers
    run = uuid.uuid4().hex[:8]  # RabbitMQ queues of this run only
    common = {"BENCH_REDIS_URL": REDIS, "BENCH_BROKER_URL": REDIS}
    amqp = {
        "BENCH_REDIS_URL": REDIS,  # Celery's result backend
        "FORKQ_RESULT_BACKEND": REDIS,
        "BENCH_CELERY_QUEUE": f"fan-{run}",
    }
    return [
        System("forkq", "fan_forkq", forkq, common),
        System(
            "forkq-rabbitmq",
            "fan_forkq",
            forkq,
            {**amqp, "BENCH_BROKER_URL": f"{AMQP}?prefix=fan-{run}"},
            on_redis=False,
        ),
        System(  # broker and results in the one file
            "forkq-sqlite",
            "fan_forkq",
            forkq,
            {**common, "BENCH_BROKER_URL": f"sqlite:///{sqlite}"},
            on_redis=False,
        ),
        System("huey", "fan_huey", peers, common),
        System("huey-notify", "fan_huey", peers, {**common, "BENCH_HUEY_NOTIFY": "1"}),
        System("celery", "fan_celery", peers, common),
        System(
            "celery-rabbitmq",
            "fan_celery",
            peers,
            {**amqp, "BENCH_BROKER_URL": AMQP},
            on_redis=False,
        ),
        System("dramatiq", "fan_dramatiq", peers, common),
    ]


def one_round(system: System, tasks: int, chord_tasks: int, runs: FanRuns, log: IO[bytes]) -> None:
    runs.load.append(os.getloadavg()[0])
    offered = drive(system, "forms")
    forms = random.sample(offered["forms"], len(offered["forms"]))
    timeout = ("--timeout", str(TIMEOUT))
    clear(system)
    client = redis.Redis.from_url(REDIS)
    with worker(system, CONCURRENCY, log) as process:
        drive(system, "fanout", "4", "--form", forms[0], *timeout)  # the worker is up
        for form in forms:
            worker_cpu, redis_cpu = tree_cpu_seconds(process.pid), server_cpu(client)
            out = drive(system, "fanout", str(tasks), "--form", form, *timeout)
            worker_cpu = tree_cpu_seconds(process.pid) - worker_cpu
            redis_cpu = server_cpu(client) - redis_cpu
            vars(runs)[form].append(tasks / out["seconds"])
            cpu = [out["cpu"], worker_cpu, redis_cpu]
            runs.cpu.setdefault(form, []).append([seconds / tasks * 1e6 for seconds in cpu])
        if offered["chord"] and chord_tasks:
            runs.chord.append(drive(system, "chord", str(chord_tasks), *timeout)["seconds"])
    client.close()


def run_fanout(
    chosen: list[System], options: argparse.Namespace, progress: Progress, log: IO[bytes]
) -> dict[str, Any]:
    """Every round of suites 6 and 7; the record's "fanout" section."""
    results = {s.label: FanRuns() for s in chosen}
    bar = progress.add_task("fan-out", total=options.fanout_rounds * len(chosen))
    for n in range(options.fanout_rounds):
        for system in random.sample(chosen, len(chosen)):
            progress.update(bar, description=f"fan-out {n + 1}: {system.label}")
            one_round(system, options.fanout_tasks, options.chord_tasks,
                      results[system.label], log)  # fmt: skip
            progress.advance(bar)
    return {
        "rounds": options.fanout_rounds,
        "tasks": options.fanout_tasks,
        "chord_tasks": options.chord_tasks,
        "concurrency": CONCURRENCY,
        "results": {label: vars(r) for label, r in results.items()},
    }


def console_table(fanout: dict[str, Any], console: Console) -> None:
    table = Table(title=f"Suites 6, 7: fan-out of {fanout['tasks']:,} tasks, chord of "
                  f"{fanout['chord_tasks']:,}: medians (min-max)")  # fmt: skip
    for column in ("system", "group tasks/s", "gather tasks/s", "loop tasks/s", "chord s"):
        table.add_column(column, justify="right")
    for label, r in fanout["results"].items():
        rates = (cell(r[form], ",.0f", dash="-") for form in FORMS)
        table.add_row(label, *rates, cell(r["chord"], ".2f", dash="-"))
    console.print(table)
