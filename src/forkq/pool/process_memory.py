"""Per-process memory figures from /proc, and what fork shared.

- RSS: every resident page the process maps. A page shared copy-on-write with the master is
  counted again in every process that maps it, so summing RSS over a pool over-counts.
- PSS: each page divided by the number of processes sharing it. Summed over a process tree it
  is the tree's real footprint.
- USS (private): pages only this process has (Private_Clean + Private_Dirty). It is what a
  child really costs and what killing it would free, which is why recycling decisions use it.
- shared: pages this process shares with at least one other (Shared_Clean + Shared_Dirty).

Sum of RSS minus sum of PSS is the memory that naive accounting claims but fork shared.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

_KIB = 1024
_USS_FIELDS = ("Private_Clean", "Private_Dirty", "Private_Hugetlb")
_SHARED_FIELDS = ("Shared_Clean", "Shared_Dirty", "Shared_Hugetlb")


class ProcessMemory(msgspec.Struct, frozen=True):
    """Figures in bytes."""

    pid: int
    role: str
    rss: int
    pss: int
    uss: int
    shared: int


class MemoryTotals(msgspec.Struct, frozen=True):
    rss: int
    pss: int
    uss: int
    shared: int

    @property
    def cow_saving(self) -> int:
        """What summing RSS over-counts: memory the processes share."""
        return self.rss - self.pss


def read_process_memory(pid: int, role: str = "") -> ProcessMemory | None:
    """The process's figures, or None if it is gone."""
    try:
        fields = _smaps_fields(pid)
    except (FileNotFoundError, ProcessLookupError):
        return None
    return ProcessMemory(
        pid=pid,
        role=role,
        rss=fields.get("Rss", 0),
        pss=fields.get("Pss", 0),
        uss=sum(fields.get(name, 0) for name in _USS_FIELDS),
        shared=sum(fields.get(name, 0) for name in _SHARED_FIELDS),
    )


def _smaps_fields(pid: int) -> dict[str, int]:
    """Byte counts by field; smaps_rollup (Linux 4.14+) or a sum over smaps."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except FileNotFoundError:
        if not Path(f"/proc/{pid}").exists():
            raise
        text = Path(f"/proc/{pid}/smaps").read_text()
    totals: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            totals[name] = totals.get(name, 0) + int(parts[0]) * _KIB
    return totals


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid`."""
    found: set[int] = set()
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found.update(int(p) for p in (task / "children").read_text().split())
        return sorted(found)
    except FileNotFoundError:
        pass  # no CONFIG_PROC_CHILDREN, or the process is gone: scan /proc instead
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _parent_of(int(entry.name)) == pid:
            found.add(int(entry.name))
    return sorted(found)


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may hold spaces and parentheses: fields resume after the last ")".
    return int(stat.rpartition(")")[2].split()[1])


def process_tree_memory(master_pid: int) -> list[ProcessMemory]:
    """The master first, then each child, skipping processes that vanished meanwhile."""
    rows = [read_process_memory(master_pid, "master")]
    rows += [read_process_memory(pid, "child") for pid in child_pids(master_pid)]
    return [row for row in rows if row is not None]


def totals(rows: Sequence[ProcessMemory]) -> MemoryTotals:
    return MemoryTotals(
        rss=sum(r.rss for r in rows),
        pss=sum(r.pss for r in rows),
        uss=sum(r.uss for r in rows),
        shared=sum(r.shared for r in rows),
    )


def format_bytes(n: int) -> str:
    if abs(n) < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def memory_json(rows: Sequence[ProcessMemory]) -> dict[str, Any]:
    """Per-process figures and totals (with the copy-on-write saving), in bytes."""
    total = totals(rows)
    return {
        "processes": [msgspec.structs.asdict(row) for row in rows],
        "totals": {**msgspec.structs.asdict(total), "cow_saving": total.cow_saving},
    }
