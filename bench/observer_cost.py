"""What counting a task for `--metrics-port` costs a child, per task: the executor's observer
calls (worker/observe.py) into a `TaskCounter` writing its area of a real shared tally
(pool/tally.py), against the same calls with no observer (the executor then skips them).

    .venv/bin/python bench/observer_cost.py [--calls 1000000] [--rounds 5]

Prints, for each case, the median over rounds of nanoseconds of CPU time per task: `started` and
`finished` as the executor calls them for a task that ran, and `rejected` for a dead letter.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from forkq.envelope import make_message
from forkq.states import SUCCESS
from forkq.worker.metrics import WorkerMetrics
from forkq.worker.observe import Observers, Rejected
from forkq.worker.task_counts import Outcome, TaskFigures

TASKS = [f"proj.tasks.task_{i}" for i in range(50)]


def per_call(run: Callable[[int], None], calls: int, rounds: int) -> float:
    """Median nanoseconds of this process's CPU time per call over `rounds` of `calls` (CPU
    time: what the child spends, however busy the machine is with other work)."""
    times = []
    for _ in range(rounds):
        started = time.process_time_ns()
        run(calls)
        times.append((time.process_time_ns() - started) / calls)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    metrics = WorkerMetrics(TASKS, capacity=8)
    counting = Observers([metrics.observer(3)])
    message = make_message(TASKS[17], [1, 2], {}, queue="default")
    rejection = Rejected("id", TASKS[17], "default", "expired")
    runtimes = [0.0004, 0.003, 0.02, 0.15, 1.2] * 20

    def executor_path(observers: Observers) -> Callable[[int], None]:
        def run(calls: int) -> None:  # as Executor._handle: the check, then each call
            for i in range(calls):
                if observers:
                    observers.started(message, "default")
                    observers.finished(message, "default", SUCCESS, runtimes[i % 100])

        return run

    def rejections(calls: int) -> None:
        for _ in range(calls):
            if counting:
                counting.rejected(rejection)

    base = per_call(executor_path(Observers()), args.calls, args.rounds)
    ran = per_call(executor_path(counting), args.calls, args.rounds)
    dead = per_call(rejections, args.calls, args.rounds)
    print(f"no observer (the loop and the check):  {base:7.1f} ns per task")
    print(f"counting a task that ran:              {ran:7.1f} ns per task (+{ran - base:.1f})")
    print(f"counting a rejection:                  {dead:7.1f} ns per task")
    figures = TaskFigures(metrics.tally.totals(), metrics.layout.row(TASKS[17]))
    assert figures.outcomes[Outcome.SUCCEEDED] == args.calls * args.rounds


if __name__ == "__main__":
    main()
