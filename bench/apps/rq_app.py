"""RQ's side: `rq worker-pool` with `concurrency` workers, each forking a work horse per job
(BENCH_RQ_WORKER=simple runs SimpleWorker, which does not fork).

The pool imports a job's module only in the work horse, when the job runs; with BENCH_PRELOAD
(the memory suite) the command goes through preload.py, which imports this module (and so the
preloaded structure) in the pool's parent, before it forks its workers and they their horses.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import counter
from redis import Redis
from rq import Queue

queue = Queue("bench", connection=Redis.from_url(os.environ["BENCH_REDIS_URL"]))


def worker_command(concurrency: int) -> list[str]:
    args = ["worker-pool", "-n", str(concurrency), "-u", os.environ["BENCH_REDIS_URL"]]
    if os.environ.get("BENCH_RQ_WORKER") == "simple":
        args += ["-w", "rq.worker.SimpleWorker"]
    args += ["-q", "bench"]
    if os.environ.get("BENCH_PRELOAD"):
        return [sys.executable, str(Path(__file__).with_name("preload.py")), "rq_app", "rq",
                *args]  # fmt: skip
    return [str(Path(sys.executable).parent / "rq"), *args]


def enqueue(count: int, bulk: bool) -> None:
    if bulk:
        with queue.connection.pipeline() as pipe:
            jobs = [Queue.prepare_data(counter.incr) for _ in range(count)]
            queue.enqueue_many(jobs, pipeline=pipe)
            pipe.execute()
    else:
        for _ in range(count):
            queue.enqueue(counter.incr)


def send_ping() -> None:
    queue.enqueue(counter.ping)


def send_scans(count: int) -> None:
    for n in range(count):
        queue.enqueue(counter.scan, n)


def send_warm(count: int) -> None:
    for _ in range(count):
        queue.enqueue(counter.warm)
