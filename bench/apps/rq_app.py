"""RQ's side: `rq worker-pool` with `concurrency` workers, each forking a work horse per job
(BENCH_RQ_WORKER=simple runs SimpleWorker, which does not fork)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import counter
from redis import Redis
from rq import Queue

queue = Queue("bench", connection=Redis.from_url(os.environ["BENCH_REDIS_URL"]))


def worker_command(concurrency: int) -> list[str]:
    cli = str(Path(sys.executable).parent / "rq")
    command = [cli, "worker-pool", "-n", str(concurrency), "-u", os.environ["BENCH_REDIS_URL"]]
    if os.environ.get("BENCH_RQ_WORKER") == "simple":
        command += ["-w", "rq.worker.SimpleWorker"]
    return [*command, "-q", "bench"]


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
