"""forkq against Huey, Dramatiq, Celery and RQ on Redis, Celery on RabbitMQ, and forkq on
SQLite, in one run: throughput, latency, fork per task, start-up, and copy-on-write memory.

    .venv/bin/python bench/compare.py [--rounds 3] [--tasks 10000] [--systems forkq,huey,...]
                                      [--memory-rounds 3] [--memory-systems forkq,celery,...]
                                      [--baseline REV]

`--baseline REV` runs forkq as it was at git revision REV beside this tree, in the same rounds
(rows LABEL@REV, from bench/.baseline), and the page divides each forkq row by its baseline:
a change measured on and off in one run.

Suites 1, 2, 3 and 5 (below) run first; suite 4, copy-on-write memory, runs after them with
its own rounds and progress bar, and bench/memory.py describes its method. `--rounds 0` or
`--memory-rounds 0` skips either part.

Installs the pinned peers (bench/peers.txt) into bench/.peers-venv on first use, and forkq,
editable from this tree with its runtime dependencies only (no dev tools), into
bench/.forkq-venv: each system runs as its users install it. Every system
runs the same tasks (bench/apps/counter.py: one INCR, or one LPUSH for latency) at
concurrency 2 with results ignored; the brokers are Redis database 14, RabbitMQ (vhost /,
queues named for the run) and, for forkq-sqlite, a SQLite file (forkq's embedded default
broker); before each enqueue the harness flushes that database, deletes the SQLite file and
purges forkq's RabbitMQ queue. The task bodies' counter is always in Redis. Rounds interleave
the systems in a new random order each time, so that the machine's drift hits all of them
alike; figures are medians over rounds (min-max).

Throughput: N tasks are enqueued one call each (timed; and with the system's bulk call where it
has one, timed separately), then the worker starts and drains them; the drain rate runs from
the first completion to the last, and worker CPU per task is the worker process tree's CPU time
over that span. Start-up: from launching the worker to the first of those tasks counted
(forkq's bytecode is compiled first, as pip compiles an installed package's). Fork per task:
forkq and Celery with `--max-tasks-per-child 1` (rows *-fork1), against RQ, which forks a work
horse per job; forkq's child forks a process per task (each runs the after-fork hooks), Celery
replaces its child. Worker CPU counts what every process of the worker's tree used, work horses
and task processes included once reaped. Row fork-floor is no worker: two processes holding
what a forkq child holds each fork a process per task, one at a time, that runs the task body
and exits, with no broker, messages or results (bench/apps/forkfloor.py); its rate is the most
forkq could reach forking per task on the machine. Latency: with the worker idle, ping tasks
sent one after another, each awaited by BLPOP on the list its body pushes to: back to back, and
with 100 ms gaps; p50, p90 and p99 of each. Commands per task: one extra pass of the throughput
workload per system under Redis MONITOR, counting the commands clients sent (not those Lua
scripts ran inside Redis) from the first enqueue to the last completion, without the task
bodies and the harness's own reads; not for the systems on RabbitMQ or SQLite.

Typed arguments: rows forkq-args and forkq-typed run the throughput workload on Redis with a
task `incr_args(n, at, key)` sent the same number, datetime and UUID, the last two as their
JSON strings. forkq-args's parameters are unannotated and it has `typing=False`: nothing is
checked or converted. forkq-typed's are annotated (`int`, `datetime`, `uuid.UUID`) with the
default `typing=True`: delay() checks that the arguments bind to the signature, and the child
converts the strings to a datetime and a UUID before the task runs. The page divides
forkq-typed by forkq-args (the feature on ÷ off, in the same run): drain rate, worker CPU per
task, and enqueue time per task. They measure no latency (the ping task takes no arguments);
against a `--baseline` revision without the `typing` option, both rows run the
unannotated task unchecked."""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import redis
from charts import draw
from harness import (
    AMQP,
    APPS,
    DB,
    FORKQ_DEPENDENCIES,
    HERE,
    REDIS,
    Interpreters,
    System,
    clear,
    compile_bytecode,
    count_commands,
    drive,
    ensure_baseline,
    ensure_interpreters,
    peer_versions,
    redis_monitor,
    run_script,
    tree_cpu_seconds,
    worker,
)
from memory import __doc__ as memory_doc
from memory import console_table as memory_report
from memory import run_memory
from report import FEATURES, cell, feature_ratios, machine, reference_for, render
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

COUNTER, DONE = "bench:count", "bench:done"
FLOOR = "fork-floor"
CONCURRENCY = 2
DRAIN_TIMEOUT = 600.0


def all_systems(pythons: Interpreters, sqlite: Path) -> list[System]:
    forkq, peers = pythons.forkq, pythons.peers
    common = {"BENCH_REDIS_URL": REDIS, "BENCH_BROKER_URL": REDIS}
    run = uuid.uuid4().hex[:8]  # RabbitMQ queues of this run only
    amqp = {
        "BENCH_REDIS_URL": REDIS,  # the task bodies' counter
        "FORKQ_RESULT_BACKEND": REDIS,  # forkq needs one for failures; results are ignored
        "BENCH_CELERY_QUEUE": f"bench-{run}",
    }
    return [
        System("forkq", "forkq_app", forkq, common, bulk=True),
        System(  # a task with arguments, typing=False and unannotated: checks, conversion off
            "forkq-args",
            "forkq_app",
            forkq,
            {**common, "BENCH_ARGS": "plain"},
            bulk=True,
            measures_latency=False,
        ),
        System(  # the same, annotated, typing=True: checked in delay(), converted in the child
            "forkq-typed",
            "forkq_app",
            forkq,
            {**common, "BENCH_ARGS": "typed"},
            bulk=True,
            measures_latency=False,
        ),
        System("huey", "huey_app", peers, common),
        System("dramatiq", "dramatiq_app", peers, common),
        System("dramatiq-p64", "dramatiq_app", peers, {**common, "dramatiq_queue_prefetch": "64"}),
        System("celery", "celery_app", peers, common),
        System("rq", "rq_app", peers, common, bulk=True, tasks_scale=0.05),
        System(  # fork per task: a new process for every task
            "forkq-fork1",
            "forkq_app",
            forkq,
            {**common, "BENCH_MAX_TASKS_PER_CHILD": "1"},
            tasks_scale=0.1,
            measures_latency=False,
        ),
        System(  # no worker: forking alone, fork per task's ceiling (bench/apps/forkfloor.py)
            FLOOR,
            "forkq_app",
            forkq,
            common,
            tasks_scale=0.1,
            measures_latency=False,
        ),
        System(
            "celery-fork1",
            "celery_app",
            peers,
            {**common, "BENCH_MAX_TASKS_PER_CHILD": "1"},
            tasks_scale=0.02,
            measures_latency=False,
        ),
        System(
            "forkq-rabbitmq",
            "forkq_app",
            forkq,
            {**amqp, "BENCH_BROKER_URL": f"{AMQP}?prefix=bench-{run}"},
            bulk=True,
            on_redis=False,
        ),
        System(
            "celery-rabbitmq",
            "celery_app",
            peers,
            {**amqp, "BENCH_BROKER_URL": AMQP},
            on_redis=False,
        ),
        System(  # the embedded default broker; the task bodies' counter stays in Redis
            "forkq-sqlite",
            "forkq_app",
            forkq,
            {**common, "BENCH_BROKER_URL": f"sqlite:///{sqlite}"},
            bulk=True,
            on_redis=False,
        ),
    ]


def baseline_systems(systems: list[System], forkq: str, python: str, revision: str) -> list[System]:
    """forkq's systems again, running the baseline's code: LABEL@REVISION."""
    return [
        replace(s, label=f"{s.label}@{revision}", python=python)
        for s in systems
        if s.python == forkq and s.label != FLOOR
    ]


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


def server_cpu(client: redis.Redis) -> float:
    """CPU seconds the Redis server has used (its main thread and the others)."""
    info: Any = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


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


def rabbitmq_version() -> str:
    """What the server says of itself when a client connects."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(AMQP))
    try:
        version = connection._impl.server_properties.get("version", b"?")  # no public accessor
    finally:
        connection.close()
    return version.decode() if isinstance(version, bytes) else str(version)


def method_text() -> str:
    """The docstring's description of the method, for the generated page."""
    paragraphs = (__doc__ or "").split("\n\n")[3:]
    return "\n\n".join(p.strip() for p in paragraphs)


def write_doc(record: dict[str, Any], doc: Path, console: Console) -> None:
    charts = [c.relative_to(doc.parent) for c in draw(record, doc.parent / "benchmarks")]
    memory_method = "\n\n".join(p.strip() for p in (memory_doc or "").split("\n\n")[1:])
    doc.write_text(render(record, method_text(), charts, memory_method))
    console.print(f"wrote {doc} and {len(charts)} charts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--gap-samples", type=int, default=200)
    parser.add_argument("--count-tasks", type=int, default=10_000)
    parser.add_argument("--systems", default="", help="comma-separated labels (default: all)")
    parser.add_argument("--memory-rounds", type=int, default=3, help="suite 4; 0 skips it")
    parser.add_argument("--memory-tasks", type=int, default=2_000)
    parser.add_argument("--memory-mb", type=float, default=300, help="the preloaded structure")
    parser.add_argument("--memory-systems", default="", help="labels of suite 4 (default: all)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "redis.json")
    parser.add_argument("--doc", type=Path, default=HERE.parent / "docs" / "benchmarks.md")
    parser.add_argument("--render-only", action="store_true", help="rewrite --doc from --out")
    parser.add_argument(
        "--baseline",
        default="",
        help="a git revision: forkq as it was there runs beside this tree (labels LABEL@REV)",
    )
    options = parser.parse_args()
    console = Console(width=max(160, Console().width))
    if options.render_only:
        write_doc(json.loads(options.out.read_text()), options.doc, console)
        return
    options.out.parent.mkdir(parents=True, exist_ok=True)
    logs = options.out.with_suffix(".log")
    with logs.open("w") as text_log:
        console.print("installing forkq and the peers into bench/.forkq-venv and .peers-venv"
                      " (first run only)")  # fmt: skip
        pythons = ensure_interpreters(text_log)
        baseline = ensure_baseline(options.baseline, text_log) if options.baseline else None
        compile_bytecode()
    sqlite = options.out.parent / "broker.sqlite3"  # deleted before every enqueue
    systems = all_systems(pythons, sqlite)
    if baseline is not None:
        systems += baseline_systems(systems, pythons.forkq, baseline, options.baseline)
    chosen = [s for s in systems if options.rounds
              and (not options.systems or s.label in options.systems.split(","))]  # fmt: skip
    results, memory = run_all(chosen, pythons, options, logs, console)
    for suffix in ("", "-wal", "-shm"):  # forkq-sqlite's broker, of no use after the run
        sqlite.with_name(sqlite.name + suffix).unlink(missing_ok=True)
    if results:
        report(results, console)
    if memory:
        memory_report(memory, console)
    server: Any = redis.Redis.from_url(REDIS).info("server")
    record: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {**machine(), "redis": server["redis_version"], "rabbitmq": rabbitmq_version()},
        "versions": peer_versions(pythons.peers),
        "forkq_versions": peer_versions(pythons.forkq, FORKQ_DEPENDENCIES),
        "rounds": options.rounds,
        "tasks": options.tasks,
        "latency_samples": options.latency_samples,
        "gap_samples": options.gap_samples,
        "results": {label: vars(r) for label, r in results.items()},
        "memory": memory,
    }
    options.out.write_text(json.dumps(record, indent=1))
    console.print(f"raw figures: {options.out}")
    write_doc(record, options.doc, console)


def run_all(
    chosen: list[System],
    pythons: Interpreters,
    options: argparse.Namespace,
    logs: Path,
    console: Console,
) -> tuple[dict[str, Runs], dict[str, Any] | None]:
    """Suites 1, 2, 3 and 5 (rounds of every system, then the MONITOR passes), then suite 4;
    each has its own bar."""
    results = {s.label: Runs() for s in chosen}
    counted = [s for s in chosen if s.on_redis and s.measures_latency]  # MONITOR: Redis
    memory = None
    with logs.open("ab") as log, Progress(console=console) as progress, \
            tempfile.TemporaryDirectory() as scratch:  # fmt: skip
        steps = options.rounds * len(chosen) + len(counted)
        bar = progress.add_task("benchmarks", total=steps, visible=bool(chosen))
        for n in range(options.rounds):
            for system in random.sample(chosen, len(chosen)):
                progress.update(bar, description=f"round {n + 1}: {system.label}")
                tasks = max(100, int(options.tasks * system.tasks_scale))
                one_round(system, tasks, options.latency_samples, options.gap_samples,
                          results[system.label], log)  # fmt: skip
                progress.advance(bar)
        for system in counted:
            progress.update(bar, description=f"commands: {system.label}")
            tasks = max(100, int(options.count_tasks * system.tasks_scale))
            count_pass(system, tasks, results[system.label], log, Path(scratch))
            progress.advance(bar)
        if options.memory_rounds:
            memory = run_memory(pythons, options, progress, log, Path(scratch))
    return results, memory


if __name__ == "__main__":
    main()
