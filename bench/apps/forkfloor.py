"""The most a fork-per-task worker can do on this machine: forking, the task body and exit,
with nothing else.

    python forkfloor.py N    (forkq's interpreter, PYTHONPATH=bench/apps)

One process loads what a forkq child holds (the worker's modules and the bench app, frozen
as the master freezes them) and then, two at a time as at concurrency 2, forks a process per
task that runs the task body (counter.incr: a new Redis client, its connection, one INCR) and
exits. No broker, no messages, no results, no supervision: whatever a worker adds to that,
forkq's or RQ's, comes on top, so tasks/s here is a ceiling for both. Prints tasks/s and the
CPU time per task of this process and its children, as JSON.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time
from importlib import metadata

import counter
import forkq_app  # noqa: F401
import redis

import forkq.cli.main
import forkq.worker.service  # noqa: F401

CONCURRENCY = 2


def cpu_seconds() -> float:
    own, children = (resource.getrusage(who) for who in
                     (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))  # fmt: skip
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_one() -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            counter.incr()
            code = 0
        finally:
            os._exit(code)
    return pid


def main(tasks: int) -> None:
    # What a worker holds before it forks for a task: a connection to Redis of its own (its
    # broker), and for forkq the package metadata its master looks up (worker/service.py).
    broker = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    broker.ping()
    metadata.version("forkq")
    gc.freeze()
    started, cpu_before = time.perf_counter(), cpu_seconds()
    running, failed = {run_one() for _ in range(min(CONCURRENCY, tasks))}, 0
    launched = len(running)
    while running:
        pid, status = os.wait()
        running.discard(pid)
        failed += status != 0
        if launched < tasks:
            running.add(run_one())
            launched += 1
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_before
    if failed:
        sys.exit(f"{failed} of {tasks} task processes failed")
    print(json.dumps({"drain": tasks / seconds, "cpu_us": cpu / tasks * 1e6}))


if __name__ == "__main__":
    main(int(sys.argv[1]))
