"""What every page shares: links under the proxy's prefix, numbers as people read them."""

from __future__ import annotations

import time
from urllib.parse import quote

import msgspec

KIB = 1024


class Links(msgspec.Struct, frozen=True):
    """Paths under `root` (the reverse proxy's prefix, '' without one)."""

    root: str

    def page(self, path: str) -> str:
        return f"{self.root}{path}"

    def task(self, task_id: str) -> str:
        return f"{self.root}/tasks/{quote(task_id, safe='')}"

    def workflow(self, group_id: str) -> str:
        return f"{self.root}/workflows/{quote(group_id, safe='')}"

    def queue(self, name: str) -> str:
        return f"{self.root}/queues?queue={quote(name, safe='')}"

    def worker_action(self, host: str, verb: str) -> str:
        return f"{self.root}/workers/{quote(host, safe='')}/{verb}"


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < KIB or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= KIB
    return f"{size:.1f} GiB"


def ago(at: float | None, now: float) -> str:
    if at is None:
        return "never"
    seconds = max(0.0, now - at)
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def clock(at: float | None) -> str:
    if at is None:
        return ""
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at % 1 * 1000):03d}"


def seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}s"
