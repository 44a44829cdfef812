"""PNG charts for docs/benchmarks.md: drain throughput, latency, copy-on-write memory, and
fan-out/fan-in and chords per system, medians with min-max bars, drawn from the raw figures
bench/compare.py saves (a part of the record without figures draws no chart)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt

FORKQ_COLOR, PEER_COLOR = "#1f6feb", "#9aa4b2"
NOT_SYSTEMS = {"fork-floor"}  # a ceiling measured beside the workers, not one of them


def _spread(values: list[float]) -> tuple[float, float, float]:
    median = statistics.median(values)
    return median, median - min(values), max(values) - median


def _bars(ax: Any, results: dict[str, dict[str, Any]], key: str, offset: float, width: float,
          label: str, hatch: str = "", among: list[str] | None = None) -> None:  # fmt: skip
    """One bar per system with figures under `key`, at its place among the systems `among`
    (default: those same systems)."""
    labels = [name for name, r in results.items() if r[key] and name not in NOT_SYSTEMS]
    among = labels if among is None else among
    figures = [_spread(results[name][key]) for name in labels]
    colors = [FORKQ_COLOR if name.startswith("forkq") else PEER_COLOR for name in labels]
    positions = [among.index(name) + offset for name in labels]
    ax.bar(
        positions,
        [f[0] for f in figures],
        width,
        yerr=[[f[1] for f in figures], [f[2] for f in figures]],
        color=colors,
        hatch=hatch,
        edgecolor="black",
        linewidth=0.5,
        capsize=3,
        label=label,
    )
    ax.set_xticks(range(len(among)), among, rotation=30, ha="right")


def draw(record: dict[str, Any], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    drawn = []
    if record["results"]:
        drawn += _throughput(record, folder)
    if record.get("memory"):
        drawn.append(_memory(record["memory"], folder / "memory.png"))
    if record.get("fanout"):
        drawn.append(_fanout(record["fanout"], folder / "fanout.png"))
    return drawn


def _throughput(record: dict[str, Any], folder: Path) -> list[Path]:
    results, drawn = record["results"], []
    fig, ax = plt.subplots(figsize=(9, 4.5))
    _bars(ax, results, "drain", 0.0, 0.7, "drain")
    ax.set_ylabel("tasks per second (higher is better)")
    ax.set_title(f"Drain: {record['tasks']:,} INCR tasks, 2 workers, results ignored")
    fig.tight_layout()
    drawn.append(folder / "throughput.png")
    fig.savefig(drawn[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4.5))
    _bars(ax, results, "p50", -0.2, 0.4, "p50")
    _bars(ax, results, "p99", 0.2, 0.4, "p99", hatch="//")
    ax.set_yscale("log")
    ax.set_ylabel("ms, enqueue to done (lower is better; log scale)")
    ax.set_title("Latency, idle worker, tasks back to back: p50 (plain) and p99 (hatched)")
    fig.tight_layout()
    drawn.append(folder / "latency.png")
    fig.savefig(drawn[-1], dpi=110)
    plt.close(fig)
    return drawn


def _memory(memory: dict[str, Any], path: Path) -> Path:
    """Tree PSS idle, after and peak beside tasks/s: what the memory costs, and what it buys."""
    results = memory["results"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), width_ratios=(2, 1))
    _bars(left, results, "idle_tree_pss", -0.27, 0.27, "idle", hatch="..")
    _bars(left, results, "after_tree_pss", 0.0, 0.27, "after the run")
    _bars(left, results, "peak_tree_pss", 0.27, 0.27, "peak", hatch="//")
    left.set_ylabel("MiB, whole worker tree (lower is better)")
    left.set_title(
        f"Tree PSS, {memory['concurrency']} children, {memory['tasks']:,} scans of a "
        f"{memory['structure']['bytes'] / 2**20:,.0f} MiB structure:\nidle (dotted), "
        "after (plain), peak (hatched)",
        fontsize=10,
    )
    _bars(right, results, "drain", 0.0, 0.7, "tasks/s")
    right.set_ylabel("scans per second (higher is better)")
    right.set_title("Throughput of the same runs", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fanout(fanout: dict[str, Any], path: Path) -> Path:
    """Tasks/s of each fan-out form beside the chord's time to its body's result."""
    results = fanout["results"]
    forms = (("group", "own fan-out API", ""), ("gather", "delay() + app.gather", ".."),
             ("loop", "delay()/get() loops", "//"))  # fmt: skip
    among = [name for name, r in results.items() if any(r[form] for form, _, _ in forms)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), width_ratios=(2, 1))
    for n, (form, label, hatch) in enumerate(forms):
        _bars(left, results, form, (n - 1) * 0.27, 0.27, label, hatch=hatch, among=among)
    left.set_ylabel("tasks per second, send to last result (higher is better)")
    left.set_title(
        f"Fan-out/fan-in of {fanout['tasks']:,} tasks, {fanout['concurrency']} workers:\n"
        "own fan-out API (plain), delay() + app.gather (dotted), delay()/get() loops (hatched)",
        fontsize=10,
    )
    _bars(right, results, "chord", 0.0, 0.7, "chord")
    right.set_ylabel("seconds, send to the body's result (lower is better)")
    right.set_title(f"Chord of {fanout['chord_tasks']:,} tasks and a sum", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
