"""A task that allocates a large array grows only its own child's private memory (USS).

Run: python examples/memory_isolation.py
"""

from __future__ import annotations

import os

from forkq import Forkq

app = Forkq("memory_isolation")  # the module name: task names match in the worker

HELD: list[bytearray] = []
MB = 1024 * 1024


@app.task
def allocate(megabytes: int) -> int:
    HELD.append(bytearray(megabytes * MB))  # zero-filled: every page is written
    return os.getpid()


@app.task
def pid() -> int:
    return os.getpid()


def main() -> None:
    from rich.console import Console

    from _harness import running_worker
    from forkq.pool.process_memory import process_tree_memory
    from forkq.process_memory_report import memory_table

    with running_worker(app, "memory_isolation", concurrency=3) as worker:
        pids = {pid.delay().get(timeout=60) for _ in range(12)}
        before = {m.pid: m for m in process_tree_memory(worker.pid)}
        grower = allocate.delay(64).get(timeout=60)
        after = process_tree_memory(worker.pid)
        Console().print(memory_table(after, title="After one child allocated 64 MiB"))
        for m in after:
            if m.pid in before:
                grew = (m.uss - before[m.pid].uss) / MB
                role = "allocating child" if m.pid == grower else m.role
                print(f"pid {m.pid} ({role}): USS grew {grew:+.1f} MiB, RSS {m.rss / MB:.1f} MiB")
    print(f"children seen serving tasks: {sorted(pids)}")
    grown = next(m for m in after if m.pid == grower)
    assert grown.uss - before[grower].uss > 60 * MB
    assert all(
        m.uss - before[m.pid].uss < 8 * MB for m in after if m.pid != grower and m.pid in before
    )
    print("only the child that ran the task paid for its array")


if __name__ == "__main__":
    main()
