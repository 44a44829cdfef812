"""Fork-per-task throughput: `--max-tasks-per-child 1` against the same pool without recycling.

Run: .venv/bin/python bench/fork_per_task.py [--tasks 1000] [--rounds 3]

Each round starts a fresh worker (concurrency 2, SQLite broker in a temporary directory),
enqueues the tasks, and measures the drain rate from the results' completion times. The two
modes alternate round by round so that the machine's drift hits both alike; medians are
reported with the range, and the ratio in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from forkq import Forkq  # noqa: E402
from forkq.demo.process import worker_process  # noqa: E402
from forkq.envelope import make_message  # noqa: E402
from forkq.result import decode_record  # noqa: E402

MODES = {"fork per task": ("--max-tasks-per-child", "1"), "long-lived children": ()}


def drain_rate(tasks: int, extra_args: tuple[str, ...]) -> float:
    with tempfile.TemporaryDirectory(prefix="forkq-bench-") as workdir:
        url = f"sqlite:///{workdir}/bench.sqlite3"
        client = Forkq("bench", broker=url)
        queue = client.settings.default_queue
        results = client.publish_many(
            [make_message("noop_app.noop", [], {}, queue=queue) for _ in range(tasks)]
        )
        args = ("-c", "2", "--prefetch", "1", "-l", "warning", *extra_args)
        with worker_process("noop_app", url, *args, cwd=str(HERE)):
            for result in results:
                result.get(timeout=600)
        done = []
        for result in results:
            stored = client.backend.get(result.id)
            assert stored is not None
            done.append(decode_record(stored.payload).date_done or 0.0)
        client.close()
    return (tasks - 1) / (max(done) - min(done))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    for round_number in range(options.rounds):
        for mode, extra in MODES.items():
            rates[mode].append(drain_rate(options.tasks, extra))
            print(f"round {round_number + 1}: {mode}: {rates[mode][-1]:,.0f} tasks/s", flush=True)
    print(f"\n{options.tasks} no-op tasks, concurrency 2, SQLite broker, {options.rounds} rounds")
    for mode, values in rates.items():
        print(
            f"{mode:>20}: median {statistics.median(values):,.0f} tasks/s "
            f"({min(values):,.0f}-{max(values):,.0f})"
        )
    ratio = statistics.median(rates["fork per task"]) / statistics.median(
        rates["long-lived children"]
    )
    print(f"fork per task runs at {ratio:.2f}x the rate of long-lived children")


if __name__ == "__main__":
    main()
