"""The memory suite's preloaded structure: about BENCH_PRELOAD_MB MiB of small Python objects,
built at import in whichever process imports it first (a worker's parent, before it forks).

Without BENCH_PRELOAD_MB the structure is empty, so the other suites' workers and every
enqueuing client import this module for nothing. The objects are many small ones on purpose
(one tuple of an int, a str and a float per record, in a list): reading a record writes the
reference counts of four objects, which is what turns copy-on-write pages private in a forked
child. One `bytes` blob would never be written and would stay shared.

    python bigdata.py    (with BENCH_PRELOAD_MB) prints JSON: records, bytes the import added
                         to this process's private memory, seconds it took
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

PARTS = 100  # a scan task reads one hundredth of the records
# Bytes a record adds to the process on CPython 3.11: the tuple, its 13-char str,
# int and float, the list's pointer, and the allocator's slack.
RECORD_BYTES = 200


def _private_bytes() -> int:
    """This process's USS, from smaps_rollup (the harness reads the same fields)."""
    total = 0
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("Private_Clean", "Private_Dirty"):
            total += int(rest.split()[0]) * 1024
    return total


def _build(megabytes: float) -> list[tuple[int, str, float]]:
    count = int(megabytes * 2**20 / RECORD_BYTES)
    return [(n + 1000, f"item-{n:08d}", n * 0.5) for n in range(count)]


_before, _started = _private_bytes(), time.perf_counter()
DATA = _build(float(os.environ.get("BENCH_PRELOAD_MB") or 0))
BUILD_SECONDS = time.perf_counter() - _started
BUILD_BYTES = _private_bytes() - _before


def scan(part: int) -> int:
    """Read every record of one part: each tuple and its three items get a reference taken
    and dropped, as any read-only task's would."""
    size = -(-len(DATA) // PARTS)
    total = 0
    for number, name, value in DATA[part % PARTS * size : (part % PARTS + 1) * size]:
        total += number + len(name) + int(value)
    return total


if __name__ == "__main__":
    print(json.dumps({"records": len(DATA), "bytes": BUILD_BYTES, "seconds": BUILD_SECONDS}))
