"""The most forkq could do forking a process per task on this machine: the fork, the task
body and the exit, with nothing else.

    python forkfloor.py N    (forkq's interpreter, PYTHONPATH=bench/apps)

One process loads what a forkq child holds (the worker's modules and the bench app, frozen
as the master freezes them, and a Redis connection of its own, as a child's broker), then
forks two slots, as at concurrency 2. Each slot, like a forkq child, forks a process per task
that runs the task body (counter.incr: a new Redis client, its connection, one INCR) and
exits, then waits for it and forks the next. No broker, no messages, no results, no
supervision: whatever forkq adds to that comes on top. Prints tasks/s (from the first fork
to the last exit) and the CPU time per task of this process and all it forked, as JSON.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from importlib import metadata

import counter
import forkq_app  # noqa: F401
import redis

import forkq.cli.main
import forkq.worker.service  # noqa: F401

CONCURRENCY = 2


def cpu_seconds() -> float:
    """This process's CPU time and that of every descendant reaped below it (a slot reaps its
    task processes before it is reaped itself)."""
    own, children = (resource.getrusage(who) for who in
                     (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))  # fmt: skip
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def fork_into(work: Callable[..., object], *args: int) -> int:
    """Fork a process that calls `work(*args)` and exits 0 if it returned, 1 if it raised."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            work(*args)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def slot(tasks: int) -> None:
    """A child's loop, forking per task: one task process at a time."""
    failed = 0
    for _ in range(tasks):
        _, status = os.waitpid(fork_into(counter.incr), 0)
        failed += status != 0
    if failed:
        raise RuntimeError(f"{failed} of {tasks} task processes failed")


def main(tasks: int) -> None:
    broker = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    broker.ping()
    metadata.version("forkq")  # as forkq's master does before forking per task
    gc.freeze()
    started, cpu_before = time.perf_counter(), cpu_seconds()
    shares = [tasks // CONCURRENCY + (n < tasks % CONCURRENCY) for n in range(CONCURRENCY)]
    slots = [fork_into(slot, share) for share in shares]
    failed = sum(os.waitpid(pid, 0)[1] != 0 for pid in slots)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_before
    if failed:
        sys.exit(f"{failed} of {CONCURRENCY} slots had task processes fail")
    print(json.dumps({"drain": tasks / seconds, "cpu_us": cpu / tasks * 1e6}))


if __name__ == "__main__":
    main(int(sys.argv[1]))
