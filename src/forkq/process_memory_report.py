"""Process memory figures (pool/process_memory) for people: a rich table and a plain
comparison of the naive and the real footprint, shown by `forkq inspect` and the demo."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from forkq.pool.process_memory import ProcessMemory, format_bytes, totals


def memory_table(rows: Sequence[ProcessMemory], title: str = "Memory per process") -> Table:
    table = Table(title=title)
    table.add_column("process")
    table.add_column("pid", justify="right")
    for name in ("RSS", "PSS", "USS (private)", "shared"):
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(
            Text(row.role), str(row.pid), *_figures(row.rss, row.pss, row.uss, row.shared)
        )
    total = totals(rows)
    table.add_section()
    table.add_row(
        "total", "", *_figures(total.rss, total.pss, total.uss, total.shared), style="bold"
    )
    return table


def _figures(*values: int) -> list[str]:
    return [format_bytes(v) for v in values]


def memory_summary(rows: Sequence[ProcessMemory]) -> str:
    total = totals(rows)
    share = 100 * total.cow_saving / total.rss if total.rss else 0.0
    return (
        f"Sum of RSS (naive accounting): {format_bytes(total.rss)}\n"
        f"Sum of PSS (real footprint):   {format_bytes(total.pss)} — fork shared "
        f"{format_bytes(total.cow_saving)} ({share:.0f}% of RSS)"
    )
