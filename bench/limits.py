"""What a rate or concurrency limit costs a task, in process: a child's executor handling
no-op tasks (results ignored) on a real broker, with no limit, a rate limit too generous to
hold anything back, a concurrency limit as generous, and both.

    python bench/limits.py [--tasks 2000] [--rounds 5] [--engines redis,sqlite]

Prints the median microseconds per task of each kind (fetching, running, taking and letting
go of the limits, acking), and what each limit adds to no limit. The rate take is one round
trip to the result backend (Redis: rate.lua; SQLite: one transaction); the concurrency slot
is two (take, and let go after the run). Redis: database 15 of 127.0.0.1:6379, under a key
prefix of the run's own, deleted after; SQLite: a file in a temporary directory.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from forkq import Forkq
from forkq.engines.contract import Consumer
from forkq.pool.scoreboard import Scoreboard
from forkq.worker.executor import Executor

KINDS = {
    "none": {},
    "rate": {"rate_limit": "1000000/s"},
    "concurrency": {"concurrency": 1_000_000},
    "both": {"rate_limit": "1000000/s", "concurrency": 1_000_000},
}
REDIS = "redis://127.0.0.1:6379/15"
BATCH = 16  # what --prefetch auto fetches for tasks this short


@contextmanager
def broker_url(engine: str) -> Iterator[str]:
    if engine == "sqlite":
        with tempfile.TemporaryDirectory() as scratch:
            yield f"sqlite:///{scratch}/bench-limits.sqlite3"
        return
    prefix = f"forkq-bench-limits-{uuid.uuid4().hex[:8]}"
    try:
        yield f"{REDIS}?prefix={prefix}"
    finally:
        client = redis.Redis.from_url(REDIS)
        for pattern in (f"{{{prefix}:*", f"{prefix}:*"):
            for key in client.scan_iter(match=pattern, count=1000):
                client.delete(key)
        client.close()


def one_round(url: str, kind: str, tasks: int) -> float:
    """Microseconds per task to handle `tasks` no-op tasks of `kind`, published beforehand."""
    app = Forkq("bench", broker=url, ignore_result=True)
    noop = app.task(name=f"bench.noop_{kind}", **KINDS[kind])(lambda: None)
    scoreboard = Scoreboard(1)
    try:
        session = app.broker.consumer(Consumer.of_child("bench", 0, 1), app.backend)
        executor = Executor(app, session, scoreboard.writer(0))
        queue = app.settings.default_queue
        noop.map([()] * tasks)
        started = time.perf_counter()
        handled = 0
        while handled < tasks:
            for delivery in session.fetch([queue], BATCH, 5.0):
                if not executor.handle(delivery):
                    raise RuntimeError(f"{kind}: a generous limit held a task back")
                handled += 1
        session.flush()
        return (time.perf_counter() - started) / tasks * 1e6
    finally:
        app.close()
        scoreboard.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--engines", default="redis,sqlite")
    options = parser.parse_args()
    table = Table("engine", *(f"{k} µs/task" for k in KINDS), "rate adds", "slot adds")
    for engine in options.engines.split(","):
        with broker_url(engine) as url:
            one_round(url, "none", 200)  # warm: connections, scripts, tables
            samples: dict[str, list[float]] = {kind: [] for kind in KINDS}
            for _ in range(options.rounds):  # kinds interleaved, so drift hits them alike
                for kind in KINDS:
                    samples[kind].append(one_round(url, kind, options.tasks))
        median = {kind: statistics.median(values) for kind, values in samples.items()}
        table.add_row(
            engine,
            *(f"{median[k]:.1f}" for k in KINDS),
            f"{median['rate'] - median['none']:+.1f}",
            f"{median['concurrency'] - median['none']:+.1f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
