"""forkq against Huey, Dramatiq, Celery and RQ on Redis, Celery on RabbitMQ, and forkq on
SQLite, in one run: throughput, latency, fork per task, start-up, copy-on-write memory,
fan-out/fan-in and chords; and forkq's control round trip.

    .venv/bin/python bench/compare.py [--suites throughput,memory,fanout]
                                      [--rounds 3] [--tasks 10000] [--systems forkq,huey,...]
                                      [--memory-rounds 3] [--memory-systems forkq,celery,...]
                                      [--fanout-rounds 3] [--fanout-tasks 3000]
                                      [--chord-tasks 1000] [--fanout-systems forkq,huey,...]
                                      [--control-pings 200]
                                      [--baseline REV]

`--baseline REV` runs forkq as it was at git revision REV beside this tree, in the same rounds
(rows LABEL@REV, from bench/.baseline), and the page divides each forkq row by its baseline:
a change measured on and off in one run.

Suites 1, 2, 3 and 5 (below) run first; suite 4, copy-on-write memory, runs after them with
its own rounds and progress bar, and bench/memory.py describes its method; suites 6 and 7,
fan-out/fan-in and chords (tasks whose results are stored), run next, as bench/fanout.py
describes; suite 8, forkq's control round trip to two workers on Redis and on RabbitMQ, runs
last, as bench/control.py describes. `--suites` names the parts to run (throughput: 1, 2, 3
and 5; memory: 4; fanout: 6 and 7; control: 8), as `--rounds 0`, `--memory-rounds 0`,
`--fanout-rounds 0` or `--control-pings 0` skips one; a part
that does not run keeps its figures from the previous run's record (`--out`), so the page
shows every part, each with the date of its own run. Without figures of every part, the
page is written beside the record (bench/results/redis.md), not over `--doc`.

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
unannotated task unchecked.

Metrics: row forkq-metrics is row forkq's workload on a worker with `--metrics-port` (set
through FORKQ_METRICS_PORT, port 19191: one worker runs at a time), whose children count every
task in shared memory for a scrape; nothing scrapes it. The page divides it by forkq (the
feature on ÷ off, in the same run).

Events: row forkq-events is row forkq's workload on a worker with -E (set through
FORKQ_EVENTS): each child records received, started and succeeded for every task and adds them
to the result backend (Redis, the broker's database) in batches of 100 or once a second,
the master a heartbeat every tick. The page divides it by forkq (on ÷ off, same run); the
target is at most 5 % of the drain rate lost (issue 18)."""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from charts import draw
from control import console_table as control_report
from control import control_section, run_suite
from fanout import __doc__ as fanout_doc
from fanout import console_table as fanout_report
from fanout import fanout_systems, run_fanout
from fanout_page import fanout_section
from harness import (
    AMQP,
    FORKQ_DEPENDENCIES,
    HERE,
    REDIS,
    Interpreters,
    System,
    compile_bytecode,
    ensure_baseline,
    ensure_interpreters,
    peer_versions,
)
from memory import __doc__ as memory_doc
from memory import console_table as memory_report
from memory import run_memory
from report import machine, render
from rich.console import Console
from rich.progress import Progress
from systems import all_systems, baseline_systems
from throughput import Runs, count_pass, one_round, report


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


SUITES = ("throughput", "memory", "fanout", "control")  # 1, 2, 3 and 5; 4; 6 and 7; 8
PARTS = ("memory", "fanout", "control")  # the record's parts besides suites 1, 2, 3 and 5
Part = dict[str, Any] | None  # one of them: None when its suites did not run
THROUGHPUT_KEYS = ("date", "rounds", "tasks", "latency_samples", "gap_samples", "results")


def write_doc(record: dict[str, Any], doc: Path, console: Console) -> None:
    charts = [c.relative_to(doc.parent) for c in draw(record, doc.parent / "benchmarks")]
    memory_method = "\n\n".join(p.strip() for p in (memory_doc or "").split("\n\n")[1:])
    fanout_method = "\n\n".join(p.strip() for p in (fanout_doc or "").split("\n\n")[1:])
    page = render(record, method_text(), charts, memory_method)
    if record.get("fanout"):
        fanout_charts = [c for c in charts if c.stem == "fanout"]
        page += "\n" + "\n".join(fanout_section(record["fanout"], fanout_method, fanout_charts))
    if record.get("control"):
        page += "\n" + "\n".join(control_section(record["control"]))
    doc.write_text(page)
    console.print(f"wrote {doc} and {len(charts)} charts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", default=",".join(SUITES), help="of " + ", ".join(SUITES))
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
    parser.add_argument("--fanout-rounds", type=int, default=3, help="suites 6, 7; 0 skips")
    parser.add_argument("--fanout-tasks", type=int, default=3_000)
    parser.add_argument("--chord-tasks", type=int, default=1_000, help="0 skips suite 7")
    parser.add_argument("--fanout-systems", default="", help="labels of suites 6, 7 (all)")
    parser.add_argument("--control-pings", type=int, default=200, help="suite 8; 0 skips it")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "redis.json")
    parser.add_argument("--doc", type=Path, default=HERE.parent / "docs" / "benchmarks.md")
    parser.add_argument("--render-only", action="store_true", help="rewrite --doc from --out")
    parser.add_argument(
        "--baseline",
        default="",
        help="a git revision: forkq as it was there runs beside this tree (labels LABEL@REV)",
    )
    options = parser.parse_args()
    suites = options.suites.split(",")
    if unknown := set(suites) - set(SUITES):
        parser.error(f"unknown suites {sorted(unknown)}: of {', '.join(SUITES)}")
    options.rounds *= "throughput" in suites
    options.memory_rounds *= "memory" in suites
    options.fanout_rounds *= "fanout" in suites
    options.control_pings *= "control" in suites
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
    systems, fan_systems = all_systems(pythons, sqlite), fanout_systems(pythons, sqlite)
    if baseline is not None:
        systems += baseline_systems(systems, pythons.forkq, baseline, options.baseline)
        fan_systems += baseline_systems(fan_systems, pythons.forkq, baseline, options.baseline)
    chosen = [s for s in systems if options.rounds
              and (not options.systems or s.label in options.systems.split(","))]  # fmt: skip
    fan_chosen = [s for s in fan_systems if options.fanout_rounds and (
        not options.fanout_systems or s.label in options.fanout_systems.split(","))]  # fmt: skip
    results, memory, fanout, control = run_all(chosen, fan_chosen, pythons, options, logs, console)
    for suffix in ("", "-wal", "-shm"):  # forkq-sqlite's broker, of no use after the run
        sqlite.with_name(sqlite.name + suffix).unlink(missing_ok=True)
    if results:
        report(results, console)
    if memory:
        memory_report(memory, console)
    if fanout:
        fanout_report(fanout, console)
    if control:
        control_report(control, console)
    server: Any = redis.Redis.from_url(REDIS).info("server")
    record: dict[str, Any] = {
        "machine": {**machine(), "redis": server["redis_version"], "rabbitmq": rabbitmq_version()},
        "versions": peer_versions(pythons.peers),
        "forkq_versions": peer_versions(pythons.forkq, FORKQ_DEPENDENCIES),
    }
    today = time.strftime("%Y-%m-%d")
    if results:
        record.update(date=today, rounds=options.rounds, tasks=options.tasks,
                      latency_samples=options.latency_samples, gap_samples=options.gap_samples,
                      results={label: vars(r) for label, r in results.items()})  # fmt: skip
    record["memory"] = memory and {**memory, "date": today}
    record["fanout"] = fanout and {**fanout, "date": today}
    record["control"] = control and {**control, "date": today}
    record = carried_over(record, options.out)
    options.out.write_text(json.dumps(record, indent=1))
    console.print(f"raw figures: {options.out}")
    doc = options.doc
    if not (record["results"] and all(record[part] for part in PARTS)):
        doc = options.out.with_suffix(".md")  # not over a page that has every part
        console.print(f"no figures of some parts, from this run or the one before: {doc}")
    write_doc(record, doc, console)


def carried_over(record: dict[str, Any], previous: Path) -> dict[str, Any]:
    """The record, with the figures of each part this run skipped taken from the previous
    run's record (`--out`) if it has them: a run of some suites rewrites their sections of the
    page only, and each section says the date of its own run."""
    if not previous.exists():
        return {"results": {}, **record}
    before = json.loads(previous.read_text())
    if "results" not in record:
        record.update({key: before[key] for key in THROUGHPUT_KEYS if key in before})
        record.setdefault("results", {})
    for part in PARTS:
        record[part] = record[part] or before.get(part)
    return record


def run_all(
    chosen: list[System],
    fan_chosen: list[System],
    pythons: Interpreters,
    options: argparse.Namespace,
    logs: Path,
    console: Console,
) -> tuple[dict[str, Runs], Part, Part, Part]:
    """Suites 1, 2, 3 and 5 (rounds of every system, then the MONITOR passes), then suite 4,
    then suites 6 and 7, then suite 8; each part has its own bar."""
    results = {s.label: Runs() for s in chosen}
    counted = [s for s in chosen if s.on_redis and s.measures_latency]  # MONITOR: Redis
    memory = fanout = control = None
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
        if fan_chosen:
            fanout = run_fanout(fan_chosen, options, progress, log)
        if options.control_pings:
            control = run_suite(pythons.forkq, options.control_pings, progress, log)
    return results, memory, fanout, control


if __name__ == "__main__":
    main()
