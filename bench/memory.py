"""Suite 4, copy-on-write memory: what a preloaded structure costs each system's children.

The app preloads about 300 MiB of small Python objects at import (bench/apps/bigdata.py: one
tuple of an int, a str and a float per record, in a list). Every worker runs 4 processes and
preloads it in its parent before forking: forkq, Celery's prefork pool and Huey's process
workers do so as shipped; Dramatiq's CLI forks before importing the app and RQ imports a job's
module only in the work horse it forks for the job, so both are started through a preloading
wrapper (bench/apps/preload.py: import the app, then run the stock CLI in the same process).
RQ forks a work horse per job from one of its 4 long-lived workers: a horse dirties pages for
one job and exits, so its workers stay near their idle size, at the price of a fork per job;
being 10-20 times slower for it, RQ runs a quarter of the tasks.

Idle: from launch, waves of warm-up tasks (a 50 ms sleep that records its process) are sent
until each of the 4 task-running processes has run one (for RQ, each worker through a
horse), then the worker tree is measured. Then 2,000 read-only scan tasks are enqueued, one
call each, while the worker runs; task n reads part n mod 100 of the structure (a hundredth:
every record's tuple, str, int and float get a reference taken and dropped), so each child
reads most parts several times. Tasks count themselves with one Redis INCR, results ignored;
tasks/s runs from the first completion to the last, as in suite 1. After: the tree is
measured once the last task is counted (for RQ, once its last horses have exited); peak: the
largest tree PSS seen by sampling every 0.5 s during the run. A process that is exiting
still holds its pages but no longer reports them, which would make its sharers' PSS look
smaller: every reading is taken again until no process in the tree is exiting.

Figures come from /proc/PID/smaps_rollup: USS (Private_Clean + Private_Dirty), PSS, and
shared (Shared_Clean + Shared_Dirty). Per child: the median over the processes that ran
tasks (for RQ, its 4 workers, not the short-lived horses); tree PSS: the worker's process and
all its descendants, helpers included (Huey's and RQ's scheduler processes). forkq runs on
Redis and on SQLite (the embedded broker), each without and with `--max-memory-per-child`
set to a quarter of the structure's measured size (rows *-maxmem; forkq recycles a child
whose USS is over it, checked every 2 s): its tree's PSS then rises and falls as children
are recycled, so the figure after the run depends on where the last task falls in that
cycle, and the peak shows the top. Rounds interleave the systems in a new random order
each time; figures are medians over rounds (min-max).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import redis
from harness import APPS, REDIS, Interpreters, System, clear, drive, process_tree, worker
from report import cell
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(APPS))
import counter  # the task bodies' key names; found through the path set above

CONCURRENCY = 4
READY_TIMEOUT = 120.0  # launch (the 300 MiB import included) to every child warm
RUN_TIMEOUT = 600.0  # RQ, forking per task, is the slowest by far
SAMPLE_EVERY = 0.5  # seconds between tree PSS samples for the peak
MIB = 2**20


@dataclass
class MemoryRuns:
    """One system's figures, one entry per round; memory in MiB."""

    drain: list[float] = field(default_factory=list)
    ready: list[float] = field(default_factory=list)  # launch to every child warm, s
    idle_tree_pss: list[float] = field(default_factory=list)
    after_tree_pss: list[float] = field(default_factory=list)
    peak_tree_pss: list[float] = field(default_factory=list)
    idle_uss: list[float] = field(default_factory=list)
    idle_pss: list[float] = field(default_factory=list)
    idle_shared: list[float] = field(default_factory=list)
    after_uss: list[float] = field(default_factory=list)
    after_pss: list[float] = field(default_factory=list)
    after_shared: list[float] = field(default_factory=list)
    processes: list[float] = field(default_factory=list)  # distinct pids that ran a scan
    tasks: int = 0


def memory_systems(pythons: Interpreters, limit_mb: int, scratch: Path) -> list[System]:
    forkq, peers = pythons.forkq, pythons.peers
    common = {"BENCH_REDIS_URL": REDIS, "BENCH_BROKER_URL": REDIS, "BENCH_PRELOAD": "1"}
    sqlite = {**common, "BENCH_BROKER_URL": f"sqlite:///{scratch / 'memory.sqlite3'}"}
    limit = {"BENCH_MAX_MEMORY_PER_CHILD": str(limit_mb)}
    return [
        System("forkq", "forkq_app", forkq, common),
        System("forkq-maxmem", "forkq_app", forkq, {**common, **limit}),
        System("forkq-sqlite", "forkq_app", forkq, sqlite),
        System("forkq-sqlite-maxmem", "forkq_app", forkq, {**sqlite, **limit}),
        System("celery", "celery_app", peers, common),
        System("huey", "huey_app", peers, common),
        System("dramatiq", "dramatiq_app", peers, common),
        System(  # a quarter of the tasks: forking per job, RQ is 10-20x slower than the others
            "rq", "rq_app", peers, {**common, "BENCH_FORK_PER_TASK": "1"}, tasks_scale=0.25
        ),
    ]


def measure_structure(megabytes: float) -> dict[str, float]:
    """What importing the structure adds to a process: records, bytes of USS, seconds."""
    out = subprocess.run(
        [sys.executable, str(APPS / "bigdata.py")],
        env={"BENCH_PRELOAD_MB": str(megabytes), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return dict(json.loads(out.stdout))


def smaps(pid: int) -> dict[str, int] | None:
    """Byte counts of /proc/PID/smaps_rollup, or None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[name] = int(parts[0]) * 1024
    return fields


def tree_figures(root: int) -> tuple[dict[int, int], dict[int, dict[str, int]]]:
    """The tree (pid: parent) and the smaps_rollup figures of its live processes, read again
    until none of them is exiting. An exiting process still holds its pages, so they still
    count against its sharers' PSS, but its own smaps_rollup is already empty: the tree's
    PSS would look smaller than it is (by hundreds of MiB when forkq recycles its children
    together). Zombies hold nothing and are left out."""
    deadline = time.perf_counter() + 10
    while True:
        tree = process_tree(root)
        figures = {pid: f for pid in tree if alive(pid) and (f := smaps(pid)) is not None}
        if all(f.get("Rss") for f in figures.values()):
            return tree, figures
        if time.perf_counter() > deadline:
            raise TimeoutError(f"processes of {root}'s tree still exiting after 10 s")
        time.sleep(0.005)


def tree_pss(root: int) -> int:
    return sum(f.get("Pss", 0) for f in tree_figures(root)[1].values())


@dataclass(frozen=True)
class Snapshot:
    tree_pss: float  # MiB
    uss: float  # MiB, median over the children that ran tasks
    pss: float
    shared: float


def snapshot(root: int, runners: set[int]) -> Snapshot:
    tree, figures = tree_figures(root)
    children = [
        f for pid, f in figures.items() if tree[pid] == root and pid in runners
    ]  # a fresh fork that has not run a task yet counts in the tree only
    if not children:
        raise RuntimeError(f"no child of {root} that ran a task is alive: {sorted(tree)}")

    def median(*names: str) -> float:
        return statistics.median(sum(f.get(n, 0) for n in names) for f in children) / MIB

    return Snapshot(
        tree_pss=sum(f.get("Pss", 0) for f in figures.values()) / MIB,
        uss=median("Private_Clean", "Private_Dirty"),
        pss=median("Pss"),
        shared=median("Shared_Clean", "Shared_Dirty"),
    )


def runners(client: redis.Redis) -> set[int]:
    return {int(pid) for pid in client.smembers(counter.RUNNERS)}


def settle(client: redis.Redis, process: subprocess.Popen[bytes]) -> None:
    """Wait until every process that ran a task but is not a long-lived runner (RQ's work
    horses) has exited, so that no task is running when the tree is measured."""
    horses = {int(p) for p in client.sunion([counter.PIDS, counter.WARM_PIDS])} - runners(client)
    deadline = time.perf_counter() + 10
    while any(alive(pid) for pid in set(process_tree(process.pid)) & horses):
        if time.perf_counter() > deadline:
            raise TimeoutError("work horses still alive 10 s after their last task")
        time.sleep(0.005)


def alive(pid: int) -> bool:
    """Not gone and not a zombie (whose memory is already freed)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def warm_up(system: System, client: redis.Redis, process: subprocess.Popen[bytes]) -> None:
    """Send waves of warm-up tasks until every task-running process has run one and every
    warm-up sent is done. A wave is sent once the previous one is done, so an idle child is
    always there to take some."""
    deadline, sent = time.perf_counter() + READY_TIMEOUT, 0
    while len(runners(client)) < CONCURRENCY or int(client.get(counter.WARM) or 0) < sent:
        if process.poll() is not None:
            raise RuntimeError(f"{system.label}: the worker exited with {process.returncode}")
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{system.label}: {len(runners(client))} children warm")
        if int(client.get(counter.WARM) or 0) >= sent and len(runners(client)) < CONCURRENCY:
            drive(system, "warm", str(CONCURRENCY * 2))
            sent += CONCURRENCY * 2
        time.sleep(0.01)


def one_run(system: System, tasks: int, megabytes: float, runs: MemoryRuns, log: IO[bytes]) -> None:
    runs.tasks = tasks
    clear(system)
    client = redis.Redis.from_url(REDIS)
    with worker(system, CONCURRENCY, log, env={"BENCH_PRELOAD_MB": str(megabytes)}) as process:
        warm_up(system, client, process)
        runs.ready.append(time.perf_counter() - process.launched_at)  # type: ignore[attr-defined]
        settle(client, process)
        idle = snapshot(process.pid, runners(client))
        with ThreadPoolExecutor(1) as pool:  # enqueue while the worker drains
            sending = pool.submit(drive, system, "scan", str(tasks))
            first, started, finished, peak = drain(system, client, process, tasks, sending)
            sending.result()
        settle(client, process)
        after = snapshot(process.pid, runners(client))
    runs.drain.append((tasks - first) / (finished - started))
    runs.idle_tree_pss.append(idle.tree_pss)
    runs.after_tree_pss.append(after.tree_pss)
    runs.peak_tree_pss.append(max(peak, idle.tree_pss, after.tree_pss))
    runs.idle_uss.append(idle.uss)
    runs.idle_pss.append(idle.pss)
    runs.idle_shared.append(idle.shared)
    runs.after_uss.append(after.uss)
    runs.after_pss.append(after.pss)
    runs.after_shared.append(after.shared)
    runs.processes.append(float(client.scard(counter.PIDS)))
    client.close()


def drain(
    system: System,
    client: redis.Redis,
    process: subprocess.Popen[bytes],
    tasks: int,
    sending: Future[Any],
) -> tuple[int, float, float, float]:
    """Poll the counter every 2 ms until `tasks` are done, sampling tree PSS meanwhile:
    (count at the first completion seen, its time, time of the last, peak tree PSS in MiB)."""
    deadline, next_sample, peak = time.perf_counter() + RUN_TIMEOUT, 0.0, 0.0
    first, started = 0, 0.0
    while True:
        now = time.perf_counter()
        done = int(client.get(counter.COUNTER) or 0)
        if done and not first:
            first, started = done, now
        if done >= tasks:
            return first, started, now, peak
        if process.poll() is not None or (sending.done() and sending.exception()):
            sending.result()  # the enqueue's error, if that is what failed
            raise RuntimeError(f"{system.label}: the worker exited with {process.returncode}")
        if now > deadline:
            raise TimeoutError(f"{system.label}: {done} of {tasks} scans done")
        if now >= next_sample:
            peak, next_sample = max(peak, tree_pss(process.pid) / MIB), now + SAMPLE_EVERY
        time.sleep(0.002)


def run_memory(
    pythons: Interpreters,
    options: argparse.Namespace,
    progress: Progress,
    log: IO[bytes],
    scratch: Path,
) -> dict[str, Any]:
    """Every round of suite 4; the record's "memory" section."""
    structure = measure_structure(options.memory_mb)
    limit_mb = round(structure["bytes"] / 4 / MIB)  # forkq's MB are MiB (2**20 bytes)
    every = memory_systems(pythons, limit_mb, scratch)
    wanted = options.memory_systems.split(",") if options.memory_systems else None
    chosen = [s for s in every if not wanted or s.label in wanted]
    results = {s.label: MemoryRuns() for s in chosen}
    bar = progress.add_task("memory", total=options.memory_rounds * len(chosen))
    started = time.perf_counter()
    for n in range(options.memory_rounds):
        for system in random.sample(chosen, len(chosen)):
            progress.update(bar, description=f"memory {n + 1}: {system.label}")
            tasks = int(options.memory_tasks * system.tasks_scale)
            one_run(system, tasks, options.memory_mb, results[system.label], log)
            progress.advance(bar)
    return {
        "structure": structure,
        "limit_mb": limit_mb,
        "tasks": options.memory_tasks,
        "concurrency": CONCURRENCY,
        "rounds": options.memory_rounds,
        "seconds": time.perf_counter() - started,
        "results": {label: vars(r) for label, r in results.items()},
    }


def console_table(memory: dict[str, Any], console: Console) -> None:
    table = Table(title=f"Suite 4: {memory['tasks']:,} scans, {memory['concurrency']} children,"
                  f" limit {memory['limit_mb']} MiB: medians (min-max), MiB")  # fmt: skip
    columns = ("system", "tasks/s", "tree PSS idle", "tree PSS after", "peak", "child USS idle",
               "child USS after", "child PSS after", "shared after", "pids")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    keys = ("drain", "idle_tree_pss", "after_tree_pss", "peak_tree_pss", "idle_uss", "after_uss",
            "after_pss", "after_shared", "processes")  # fmt: skip
    for label, r in memory["results"].items():
        table.add_row(label, *(cell(r[key], ",.0f", dash="-") for key in keys))
    console.print(table)
