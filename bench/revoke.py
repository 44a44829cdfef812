"""What the revoked-id check costs a task, in process: a child's executor handling no-op tasks
(results ignored) on a real broker, with the check switched off, with nothing revoked, and with
a large revoked set (none of them these tasks); and the check alone, timed in a loop.

    python bench/revoke.py [--tasks 6000] [--rounds 5] [--revoked 50000]
                           [--engines redis,sqlite,memory]

The three kinds take turns batch by batch (16 tasks, what --prefetch auto fetches for tasks
this short; in a shuffled order each turn) in the same process, on the same session and
queue, so that drift and other load on the machine hit them alike; each batch's
`Executor.handle` calls are timed (the fetch is not), in this process's CPU time (what the
check itself costs; unlike the wall clock, it does not count the time other processes had the
CPU). Prints, per engine, the median over all batches of the CPU microseconds per task of each
kind (a median, so that a batch that met a WAL checkpoint does not count for more than one),
what the check adds to none, the same by the wall clock, and the nanoseconds of one check
alone. The revoked ids
have the bulletin a worker's child has (nothing posted: no read after the first) and the
default 5 s backstop: a read of what changed, which is nothing, every 5 s. The large set is
read from a backend of its own (another key prefix, or file), as a child would at boot.
Redis: database 15 of 127.0.0.1:6379, under key prefixes of the run's own, deleted after;
SQLite: temporary files; memory://: no I/O at all.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import time
import timeit
import uuid
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from limits import BATCH  # bench/limits.py: the same set-up
from limits import broker_url as server_url

from forkq import Forkq
from forkq.engines.contract import Consumer, ResultBackend
from forkq.engines.registry import open_backend
from forkq.pool.bulletin import Bulletin
from forkq.pool.scoreboard import Scoreboard
from forkq.worker.executor import Executor
from forkq.worker.revoked import RevokedIds

KINDS = ("off", "empty", "large")


class CheckOff(RevokedIds):
    """The check switched off: nothing is ever revoked, nothing read."""

    def revoked(self, task_id: str) -> bool:
        return False


@contextlib.contextmanager
def broker_url(engine: str) -> Iterator[str]:
    if engine == "memory":
        yield f"memory://bench-revoke-{uuid.uuid4().hex[:8]}"
        return
    with server_url(engine) as url:
        yield url


Samples = dict[tuple[str, str], list[float]]  # (kind, "cpu" or "wall") -> µs/task per batch


def one_round(url: str, large: ResultBackend, tasks: int) -> Samples:
    """Microseconds per task of each batch, by kind and clock, over `tasks` no-op tasks."""
    app = Forkq("bench", broker=url, ignore_result=True)
    noop = app.task(name="bench.noop")(lambda: None)
    scoreboard, bulletin = Scoreboard(1), Bulletin()
    try:
        session = app.broker.consumer(Consumer.of_child("bench", 0, 1), app.backend)
        checks = {
            "off": CheckOff(session.results),
            "empty": RevokedIds(session.results, bulletin.reader()),
            "large": RevokedIds(large, bulletin.reader()),
        }
        for check in checks.values():
            check.refresh()  # as a child's boot does
        assert len(checks["empty"]) == 0 and len(checks["large"]) > 0
        executor = Executor(app, session, scoreboard.writer(0))
        queue = app.settings.default_queue
        noop.map([()] * tasks)
        per_task: Samples = {(kind, clock): [] for kind in KINDS for clock in ("cpu", "wall")}
        handled, turns = 0, []
        while handled < tasks:
            if not turns:
                turns = random.sample(KINDS, len(KINDS))
            kind = turns.pop()
            batch = session.fetch([queue], BATCH, 5.0)
            executor.revoked = checks[kind]
            cpu, wall = time.process_time(), time.perf_counter()
            for delivery in batch:
                executor.handle(delivery)
            per_task[kind, "cpu"].append((time.process_time() - cpu) / len(batch) * 1e6)
            per_task[kind, "wall"].append((time.perf_counter() - wall) / len(batch) * 1e6)
            handled += len(batch)
        session.flush()
        return per_task
    finally:
        app.close()
        scoreboard.close()
        bulletin.close()


def check_alone(backend: ResultBackend) -> float:
    """Nanoseconds of one `RevokedIds.revoked` of an id not revoked, with the set loaded."""
    bulletin = Bulletin()
    try:
        revoked = RevokedIds(backend, bulletin.reader())
        revoked.refresh()
        task_id = str(uuid.uuid4())
        loops = 200_000
        seconds = min(timeit.repeat(lambda: revoked.revoked(task_id), number=loops, repeat=5))
        return seconds / loops * 1e9
    finally:
        bulletin.close()


def revoke_many(backend: ResultBackend, count: int) -> None:
    for start in range(0, count, 5_000):
        backend.revoke([str(uuid.uuid4()) for _ in range(min(5_000, count - start))], 3600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--revoked", type=int, default=50_000)
    parser.add_argument("--engines", default="redis,sqlite,memory")
    options = parser.parse_args()
    table = Table(
        "engine",
        *(f"{k} CPU µs/task" for k in KINDS),
        "empty adds",
        "large adds",
        "by the wall clock: empty, large add",
        "check ns",
    )
    for engine in options.engines.split(","):
        with broker_url(engine) as url, broker_url(engine) as large_url:
            large = open_backend(large_url)
            try:
                revoke_many(large, options.revoked)
                one_round(url, large, 300)  # warm: connections, scripts, tables
                rounds = [one_round(url, large, options.tasks) for _ in range(options.rounds)]
                check = check_alone(large)
            finally:
                large.close()
        m = {key: statistics.median(b for r in rounds for b in r[key]) for key in rounds[0]}
        table.add_row(
            engine,
            *(f"{m[k, 'cpu']:.1f}" for k in KINDS),
            f"{m['empty', 'cpu'] - m['off', 'cpu']:+.2f}",
            f"{m['large', 'cpu'] - m['off', 'cpu']:+.2f}",
            f"{m['empty', 'wall'] - m['off', 'wall']:+.2f}, "
            f"{m['large', 'wall'] - m['off', 'wall']:+.2f}",
            f"{check:.0f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
