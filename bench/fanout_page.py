"""The page's section on suites 6 and 7 (fan-out/fan-in, chords), from the record's "fanout"
part: figures as median (min-max) over the rounds, forkq's ratio to each peer on the same
broker, and issue 17's targets."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from report import cell, reference_for

COLUMNS = [  # (key, heading, format, higher is better)
    ("group", "own fan-out API, tasks/s", ",.0f", True),
    ("gather", "delay() then app.gather(), tasks/s", ",.0f", True),
    ("loop", "delay()/get() loops, tasks/s", ",.0f", True),
    ("chord", "chord: s to the body's result", ".2f", False),
]
DASH = "\u2013"


def _median(r: dict[str, Any], key: str) -> float:
    return float(statistics.median(r[key]))


def table(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| system | " + " | ".join(h for _, h, _, _ in COLUMNS) + " |"]
    lines.append("|" + " --- |" * (len(COLUMNS) + 1))
    for label, r in results.items():
        cells = [cell(r[key], fmt) for key, _, fmt, _ in COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def cpu_table(results: dict[str, dict[str, Any]]) -> list[str]:
    """CPU µs per task of each form: client + worker + Redis = total, medians over rounds
    of each part."""
    forms = [(key, heading) for key, heading, _, _ in COLUMNS if key != "chord"]
    lines = ["| CPU µs per task: client + worker + Redis | " + " | ".join(
        heading.replace(", tasks/s", "") for _, heading in forms) + " |"]  # fmt: skip
    lines.append("|" + " --- |" * (len(forms) + 1))
    for label, r in results.items():
        cells = []
        for form, _ in forms:
            rounds = r.get("cpu", {}).get(form)  # older records: none
            if not rounds:
                cells.append(DASH)
                continue
            parts = [statistics.median(part) for part in zip(*rounds, strict=True)]
            shown = " + ".join(f"{part:,.0f}" for part in parts)
            cells.append(f"{shown} = {sum(parts):,.0f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def ratio(ours: dict[str, Any], theirs: dict[str, Any], key: str, higher: bool) -> str:
    """How many times better forkq's figure is: a rate's quotient, a time's inverse."""
    if not (ours[key] and theirs[key]):
        return DASH
    quotient = _median(ours, key) / _median(theirs, key)
    return f"{quotient if higher else 1 / quotient:.2f}"


def ratios(results: dict[str, dict[str, Any]]) -> list[str]:
    """forkq on the same broker against each peer, form by form; forkq's gather against the
    peer's own fan-out API as well."""
    headings = ["group", "forkq's gather ÷ peer's group", "loop", "chord (peer's time ÷ forkq's)"]
    lines = ["| forkq ÷ peer, same broker | " + " | ".join(headings) + " |"]
    lines.append("|" + " --- |" * (len(headings) + 1))
    for label, r in results.items():
        ours = results.get(reference_for(label, results))
        if ours is None or label.startswith("forkq"):
            continue
        gather = DASH
        if ours["gather"] and r["group"]:
            gather = f"{_median(ours, 'gather') / _median(r, 'group'):.2f}"
        cells = [ratio(ours, r, "group", True), gather, ratio(ours, r, "loop", True),
                 ratio(ours, r, "chord", False)]  # fmt: skip
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def against_baseline(results: dict[str, dict[str, Any]]) -> list[str]:
    """Each forkq row over the same row at the baseline revision (`--baseline`)."""
    pairs = [(label.split("@")[0], label) for label in results if "@" in label]
    pairs = [(ours, base) for ours, base in pairs if ours in results]
    if not pairs:
        return []
    headings = [heading for _, heading, _, _ in COLUMNS]
    lines = ["| this tree ÷ baseline (a time's inverse) | " + " | ".join(headings) + " |"]
    lines.append("|" + " --- |" * (len(headings) + 1))
    for ours, base in pairs:
        cells = [ratio(results[ours], results[base], key, higher) for key, _, _, higher in COLUMNS]
        lines.append(f"| {ours} ÷ {base} | " + " | ".join(cells) + " |")
    return ["", *lines]


def targets(results: dict[str, dict[str, Any]]) -> list[str]:
    """Issue 17's targets against Huey (the faster of its rows, form by form), each marked
    met or missed, and Celery's figures."""
    ours, lines = results.get("forkq"), []
    hueys = {label: r for label, r in results.items() if label.startswith("huey")}
    if ours is None:
        return lines

    def check(text: str, factor: float, key: str, theirs_key: str) -> None:
        rows = [(_median(r, theirs_key), label) for label, r in hueys.items() if r[theirs_key]]
        if not (rows and ours[key]):
            return
        theirs, label = max(rows)
        x = _median(ours, key) / theirs
        lines.append(f"- {'met' if x >= factor else '**missed**'}: {text} (x{x:.2f} {label})")

    check("fan-out/fan-in with forkq's group at least 2x Huey's map()", 2.0, "group", "group")
    check("fan-out/fan-in with app.gather() at least 2x Huey's map()", 2.0, "gather", "group")
    check("delay()/get() loops at least 1.5x Huey's", 1.5, "loop", "loop")
    celery = results.get("celery")
    if celery:
        shown = [f"{form} x{_median(ours, form) / _median(celery, form):.2f}"
                 for form in ("group", "loop") if ours[form] and celery[form]]  # fmt: skip
        if ours["chord"] and celery["chord"]:
            shown.append(f"chord x{_median(celery, 'chord') / _median(ours, 'chord'):.2f} faster")
        lines.append("- against Celery on Redis (no target): " + ", ".join(shown))
    return lines


def fanout_section(fanout: dict[str, Any], method: str, charts: list[Path]) -> list[str]:
    results = fanout["results"]
    loads = [x for r in results.values() for x in r.get("load", [])]  # older records: none
    load = f" The 1-minute load average as each round began: {cell(loads, '.2f')}." if loads else ""
    return [
        "## Fan-out/fan-in and chords (suites 6 and 7)",
        "",
        method,
        "",
        f"Run on {fanout.get('date', 'an earlier date')}: {fanout['rounds']} rounds; fan-outs "
        f"of {fanout['tasks']:,} tasks, chords of {fanout['chord_tasks']:,}, "
        f"{fanout['concurrency']} worker processes.{load}",
        "",
        *table(results),
        "",
        *[f"![{chart.stem}]({chart})" for chart in charts],
        "",
        *cpu_table(results),
        "",
        "Ratios of medians (above 1 means forkq is faster):",
        "",
        *ratios(results),
        *against_baseline(results),
        "",
        "Against issue 17's targets:",
        "",
        *targets(results),
        "",
    ]
