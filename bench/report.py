"""docs/benchmarks.md from the raw figures bench/compare.py saves: every figure as median
(min-max) over the rounds, and forkq's ratio to each peer."""

from __future__ import annotations

import platform
import statistics
from pathlib import Path
from typing import Any

COLUMNS = [  # (key, heading, format, higher is better)
    ("drain", "drain tasks/s", ",.0f", True),
    ("startup", "start to first task done, s", ".2f", False),
    ("enqueue", "enqueue/s, one call each", ",.0f", True),
    ("bulk_enqueue", "enqueue/s, bulk", ",.0f", True),
    ("cpu_us", "worker CPU µs/task", ",.0f", False),
    ("redis_cpu_us", "Redis CPU µs/task", ",.0f", False),
    ("p50", "latency p50 ms", ".2f", False),
    ("p90", "latency p90 ms", ".2f", False),
    ("p99", "latency p99 ms", ".2f", False),
    ("gap_p50", "p50 ms, 100 ms gaps", ".2f", False),
    ("gap_p90", "p90 ms, 100 ms gaps", ".2f", False),
    ("gap_p99", "p99 ms, 100 ms gaps", ".2f", False),
]


def machine() -> dict[str, str]:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "unknown",
    )  # fmt: skip
    cpus = len(list(Path("/sys/devices/system/cpu").glob("cpu[0-9]*")))
    return {
        "cpu": f"{model}, {cpus} vCPUs",
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def cell(values: list[float], fmt: str, dash: str = "\u2013") -> str:
    """Median (min-max) of the rounds."""
    if not values:
        return dash
    median = format(statistics.median(values), fmt)
    if len(values) == 1:
        return median
    return f"{median} ({format(min(values), fmt)}{dash}{format(max(values), fmt)})"


def table(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| system | " + " | ".join(h for _, h, _, _ in COLUMNS) + " | Redis commands/task |"]
    # (rows *-rabbitmq and *-sqlite run on another broker: their Redis CPU is the task
    # bodies' INCR only)
    lines.append("|" + " --- |" * (len(COLUMNS) + 2))
    for label, r in results.items():
        cells = [cell(r.get(key, []), fmt) for key, _, fmt, _ in COLUMNS]  # older records: no p90
        commands = "\u2013" if r["commands"] is None else f"{r['commands']:.2f}"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {commands} |")
    return lines


def reference_for(label: str, labels: Any) -> str:
    """The forkq row a peer's row is compared with: same broker, same fork-per-task mode (RQ
    forks a work horse per job, so it meets forkq forking per task)."""
    if label.endswith("-rabbitmq"):
        return "forkq-rabbitmq"
    if label == "fork-floor":  # forking alone: the ceiling of forkq forking per task
        return "forkq-fork1"
    if (label.endswith("-fork1") or label == "rq") and "forkq-fork1" in labels:
        return "forkq-fork1"
    return "forkq"


def ratios(results: dict[str, dict[str, Any]]) -> list[str]:
    """forkq on the same broker divided by each peer."""
    keys = [c for c in COLUMNS if any(r.get(c[0]) for r in results.values())]
    lines = ["| forkq ÷ peer, same broker | " + " | ".join(h for _, h, _, _ in keys) + " |"]
    lines.append("|" + " --- |" * (len(keys) + 1))
    for label, r in results.items():
        reference = reference_for(label, results)
        ours = results.get(reference)
        if ours is None or label == reference or label.startswith("forkq"):
            continue
        cells = []
        for key, _, _, _ in keys:
            if r.get(key) and ours.get(key):
                cells.append(f"{statistics.median(ours[key]) / statistics.median(r[key]):.2f}")
            else:
                cells.append("\u2013")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def against_baseline(results: dict[str, dict[str, Any]]) -> list[str]:
    """Each forkq row divided by the same row running the baseline revision (LABEL@REV), when
    the run had one (`--baseline`): a change measured on and off in the same run."""
    pairs = [(label.split("@")[0], label) for label in results if "@" in label]
    pairs = [(ours, base) for ours, base in pairs if ours in results]
    if not pairs:
        return []
    keys = [c for c in COLUMNS if any(results[o].get(c[0]) for o, _ in pairs)]
    lines = ["| this tree ÷ baseline | " + " | ".join(h for _, h, _, _ in keys) + " |"]
    lines.append("|" + " --- |" * (len(keys) + 1))
    for ours, base in pairs:
        cells = []
        for key, _, _, _ in keys:
            a, b = results[ours].get(key), results[base].get(key)
            cells.append(
                f"{statistics.median(a) / statistics.median(b):.3f}" if a and b else "\u2013"
            )
        lines.append(f"| {ours} ÷ {base} | " + " | ".join(cells) + " |")
    return ["", *lines]


FEATURES = [  # (on, off): rows of one run, one feature apart
    ("forkq-typed", "forkq-args"),
    ("forkq-metrics", "forkq"),
    ("forkq-events", "forkq"),
]
FEATURE_COLUMNS = [  # (key, heading, a rate shown as time per task)
    ("drain", "drain tasks/s", False),
    ("cpu_us", "worker CPU µs/task", False),
    ("enqueue", "enqueue time/task, one call each", True),
    ("bulk_enqueue", "enqueue time/task, bulk", True),
]


def feature_ratios(on: dict[str, Any], off: dict[str, Any]) -> list[tuple[str, float | None]]:
    """A feature's row divided by the same workload's row without it, column by column
    (medians; a rate's inverse where the column is time per task)."""
    cells: list[tuple[str, float | None]] = []
    for key, heading, per_task in FEATURE_COLUMNS:
        a, b = on.get(key), off.get(key)
        ratio = statistics.median(a) / statistics.median(b) if a and b else None
        cells.append((heading, 1 / ratio if per_task and ratio else ratio))
    return cells


def features(results: dict[str, dict[str, Any]]) -> list[str]:
    """Each feature measured on and off in the run: forkq-typed (a task whose parameters are
    annotated, `typing=True`: arguments checked in delay() and converted in the child) over
    forkq-args (the same arguments, unannotated, `typing=False`); forkq-metrics (a worker
    with `--metrics-port`, its children counting every task, nobody scraping) over forkq;
    forkq-events (a worker with -E: received, started and succeeded of every task, and the
    worker's heartbeats, kept in the result backend) over forkq."""
    pairs = [(on, off) for on, off in FEATURES if on in results and off in results]
    if not pairs:
        return []
    headings = [heading for _, heading, _ in FEATURE_COLUMNS]
    lines = ["| feature on ÷ off, same run | " + " | ".join(headings) + " |"]
    lines.append("|" + " --- |" * (len(headings) + 1))
    for on, off in pairs:
        cells = feature_ratios(results[on], results[off])
        text = ["\u2013" if r is None else f"{r:.3f}" for _, r in cells]
        lines.append(f"| {on} ÷ {off} | " + " | ".join(text) + " |")
    return ["", *lines]


def _median(r: dict[str, Any], key: str) -> float:
    return float(statistics.median(r[key]))


def targets(results: dict[str, dict[str, Any]]) -> list[str]:
    """Issues 4, 5 and 6's targets (but memory's), each marked met or missed."""
    ours, lines = results.get("forkq"), []
    if ours is None:
        return lines

    def check(text: str, met: bool, figure: str) -> None:
        lines.append(f"- {'met' if met else '**missed**'}: {text} ({figure})")

    for peer, factor in (("huey", 2.0), ("celery", 5.0)):
        if peer in results:
            ratio = _median(ours, "drain") / _median(results[peer], "drain")
            check(f"drain at least {factor:.0f}x {peer}", ratio >= factor, f"x{ratio:.2f}")
    cpu = _median(ours, "cpu_us")
    check("worker CPU per task at most 250 µs", cpu <= 250, f"{cpu:.0f} µs")
    if "huey" in results:
        p50, huey = _median(ours, "p50"), _median(results["huey"], "p50")
        check("latency p50 at most Huey's", p50 <= huey, f"{p50:.3f} ms vs {huey:.3f} ms")
    p99 = _median(ours, "p99")
    check("latency p99 at most 2 ms", p99 <= 2.0, f"{p99:.2f} ms")
    if "huey" in results:
        startup, huey = _median(ours, "startup"), _median(results["huey"], "startup")
        check("start-up at most Huey's (issue 6)", startup <= huey,
              f"{startup:.2f} s vs {huey:.2f} s")  # fmt: skip
    forking, rq = results.get("forkq-fork1"), results.get("rq")
    if forking and rq:
        ratio = _median(forking, "drain") / _median(rq, "drain")
        check("fork per task at least 4x RQ (issue 6)", ratio >= 4, f"x{ratio:.2f}")
        if floor := results.get("fork-floor"):
            most = _median(floor, "drain") / _median(rq, "drain")
            reached = _median(forking, "drain") / _median(floor, "drain")
            lines.append(
                f"  - forking alone (row fork-floor: from a process holding what a forkq child "
                f"holds, fork, the task body, exit; nothing else) runs x{most:.2f} RQ's rate "
                f"here: the most forkq forking per task could reach on this machine"
                f"{', below the target' if most < 4 else ''}; forkq-fork1 runs at "
                f"{reached:.0%} of it"
            )
    if events := results.get("forkq-events"):  # issue 18: events on by default if cheap
        kept = _median(events, "drain") / _median(ours, "drain")
        check("events (-E) cost at most 5% of the drain rate (issue 18)", kept >= 0.95,
              f"{kept:.1%} of forkq's rate")  # fmt: skip
    rabbit, celery_rabbit = results.get("forkq-rabbitmq"), results.get("celery-rabbitmq")
    if rabbit and celery_rabbit:
        ratio = _median(rabbit, "drain") / _median(celery_rabbit, "drain")
        check("on RabbitMQ, drain at least 2x Celery (issue 5)", ratio >= 2, f"x{ratio:.2f}")
        p50, theirs = _median(rabbit, "p50"), _median(celery_rabbit, "p50")
        check("on RabbitMQ, latency p50 at most Celery's (issue 5)", p50 <= theirs,
              f"{p50:.2f} ms vs {theirs:.2f} ms")  # fmt: skip
    if ours["commands"] is not None:
        commands = ours["commands"]
        check("at most 2 Redis commands per task, amortised, enqueue included",
              round(commands, 2) <= 2.0, f"{commands:.3f}")  # fmt: skip
    return lines


MEMORY_COLUMNS = [  # (key, heading, format)
    ("drain", "tasks/s", ",.0f"),
    ("idle_tree_pss", "tree PSS idle", ",.0f"),
    ("after_tree_pss", "tree PSS after", ",.0f"),
    ("peak_tree_pss", "tree PSS peak", ",.0f"),
    ("idle_uss", "child USS idle", ",.1f"),
    ("idle_pss", "child PSS idle", ",.1f"),
    ("idle_shared", "child shared idle", ",.0f"),
    ("after_uss", "child USS after", ",.0f"),
    ("after_pss", "child PSS after", ",.0f"),
    ("after_shared", "child shared after", ",.0f"),
    ("processes", "processes that ran scans", ",.0f"),
    ("ready", "launch to all children warm, s", ".2f"),
]


def memory_table(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| system | " + " | ".join(h for _, h, _ in MEMORY_COLUMNS) + " |"]
    lines.append("|" + " --- |" * (len(MEMORY_COLUMNS) + 1))
    for label, r in results.items():
        cells = [cell(r[key], fmt) for key, _, fmt in MEMORY_COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def memory_ratios(results: dict[str, dict[str, Any]]) -> list[str]:
    """Each forkq row's tree PSS after the run and tasks/s, divided by each peer's."""
    ours = [label for label in results if label.startswith("forkq")]
    headings = [f"{o}: {what}" for o in ours for what in ("tree PSS after", "tasks/s")]
    lines = ["| forkq ÷ peer | " + " | ".join(headings) + " |"]
    lines.append("|" + " --- |" * (len(headings) + 1))
    for label, r in results.items():
        if label in ours:
            continue
        cells = [
            f"{_median(results[o], key) / _median(r, key):.2f}"
            for o in ours
            for key in ("after_tree_pss", "drain")
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def memory_targets(memory: dict[str, Any]) -> list[str]:
    """Issue 6's memory target, for forkq with the limit on Redis (and, as well, on SQLite),
    with the verdict against each peer."""
    results, lines = memory["results"], []
    peers = {label: _median(r, "after_tree_pss") for label, r in results.items()
             if not label.startswith("forkq")}  # fmt: skip
    for ours, where in (("forkq-maxmem", ""), ("forkq-sqlite-maxmem", " (also on SQLite)")):
        if ours not in results or not peers:
            continue
        pss = _median(results[ours], "after_tree_pss")
        verdicts = ", ".join(
            f"x{pss / theirs:.2f} of {label}'s {theirs:,.0f} MiB "
            f"({'met' if pss <= theirs / 2 else 'missed'})"
            for label, theirs in peers.items()
        )
        met = all(pss <= theirs / 2 for theirs in peers.values())
        lines.append(
            f"- {'met' if met else '**missed**'}{where}: with `--max-memory-per-child "
            f"{memory['limit_mb']}` (a quarter of the structure), tree PSS after the run at "
            f"most half of every peer's: {ours} {pss:,.0f} MiB is {verdicts}"
        )
    structure = memory["structure"]["bytes"] / 2**20
    if (rq := peers.get("rq")) is not None and rq / 2 < structure:
        lines.append(
            f"- half of rq's tree, {rq / 2:,.0f} MiB, is less than the structure itself "
            f"({structure:,.0f} MiB), which the tree of every worker that preloads holds at "
            "least once: against RQ, no preloading worker can meet the target on this workload"
        )
    if "rq" in results and "forkq-maxmem" in results:
        lines += [
            "",
            "RQ's tree stays near its idle size because its 4 workers never run a task: each "
            "job runs in a work horse forked for it, which exits after the job, taking the "
            f"pages it dirtied with it. It pays with a fork per job: "
            f"{_median(results['rq'], 'drain'):,.0f} tasks/s here, against "
            f"{_median(results['forkq-maxmem'], 'drain'):,.0f} for forkq-maxmem.",
        ]
    return lines


def memory_section(memory: dict[str, Any], method: str, charts: list[Path]) -> list[str]:
    structure = memory["structure"]
    return [
        "## Copy-on-write memory (suite 4)",
        "",
        method,
        "",
        f"The structure: {structure['records']:,.0f} records; importing it added "
        f"{structure['bytes'] / 2**20:,.0f} MiB of private memory to the process that built it, "
        f"in {structure['seconds']:.1f} s; the limit, a quarter of that, is "
        f"`--max-memory-per-child {memory['limit_mb']}` (forkq's MB are MiB). "
        f"Rounds: {memory['rounds']}, of {memory['tasks']:,} tasks (RQ: a quarter); the suite "
        f"took {memory['seconds'] / 60:.0f} minutes. Memory in MiB; per child: the median child.",
        "",
        *memory_table(memory["results"]),
        "",
        *[f"![{chart.stem}]({chart})" for chart in charts],
        "",
        "Ratios of medians (below 1 means forkq's tree is smaller, above 1 that it is faster):",
        "",
        *memory_ratios(memory["results"]),
        "",
        "Against issue 6's memory target:",
        "",
        *memory_targets(memory),
        "",
    ]


def render(
    record: dict[str, Any],
    method: str,
    charts: list[Path] | None = None,
    memory_method: str = "",
) -> str:
    """The page: the run's machine and versions, then each part of the record that has
    figures (suites 1, 2, 3 and 5; suite 4)."""
    info, results = record["machine"], record["results"]
    versions = ", ".join(f"{name} {version}" for name, version in record["versions"].items())
    forkq_versions = ", ".join(f"{n} {v}" for n, v in record.get("forkq_versions", {}).items())
    if forkq_versions:
        forkq_versions = f"forkq's: {forkq_versions}. "
    run = (f"Run on {record['date']}: " if results else "Machine: ") + (
        f"{info['cpu']}, Linux {info['kernel']}, Python "
        f"{info['python']}, Redis {info['redis']}, RabbitMQ {info.get('rabbitmq', 'unknown')}. "
        f"Peers: {versions}. {forkq_versions}"
    )
    if results:
        run += (
            f"{record['rounds']} rounds of {record['tasks']:,} tasks (RQ: a twentieth; forkq "
            "forking per task: a tenth; Celery forking per task: a fiftieth), systems "
            "interleaved in a new random order each round; "
            f"latency from {record.get('latency_samples', 200)} tasks back to back and "
            f"{record.get('gap_samples', 50)} with 100 ms gaps per round."
        )
    parts = [
        "# Benchmarks",
        "",
        "Generated by `bench/compare.py` (`make bench`); do not edit by hand.",
        "",
        run.rstrip(),
        "",
    ]
    if results:
        parts += throughput_section(results, method, charts or [])
    if record.get("memory"):
        memory_charts = [c for c in charts or [] if c.stem == "memory"]
        parts += memory_section(record["memory"], memory_method, memory_charts)
    return "\n".join(parts)


THROUGHPUT_CHARTS = ("throughput", "latency")


def throughput_section(results: dict[str, Any], method: str, charts: list[Path]) -> list[str]:
    return [
        "## Throughput, CPU, latency, commands, start-up (Redis, RabbitMQ, SQLite)",
        "",
        method,
        "",
        *table(results),
        "",
        *[f"![{chart.stem}]({chart})" for chart in charts if chart.stem in THROUGHPUT_CHARTS],
        "",
        "Ratios of medians (above 1 means forkq's figure is higher; for CPU and latency, "
        "lower is better):",
        "",
        *ratios(results),
        *against_baseline(results),
        *features(results),
        "",
        "Against the targets of issues 4 (Redis), 5 (RabbitMQ) and 6:",
        "",
        *targets(results),
        "",
    ]
