"""The client half of the comparison, run in the venv of the system it drives.

    python driver.py APP command CONCURRENCY       the worker's command line, as JSON
    python driver.py APP enqueue COUNT [--bulk]    enqueue COUNT incr tasks; JSON seconds
    python driver.py APP latency COUNT GAP_MS      COUNT ping tasks one after another, each
                                                   awaited with BLPOP, after 4 untimed ones;
                                                   JSON milliseconds
    python driver.py APP scan COUNT                COUNT scan tasks (parts 0, 1, ...), one
                                                   call each; JSON seconds
    python driver.py APP warm COUNT                COUNT warm-up tasks; JSON seconds
    python driver.py APP forms                     the fan-out forms APP offers and whether
                                                   it has a chord; JSON
    python driver.py APP fanout COUNT --form F     COUNT add tasks sent and gathered in form
                                                   F, after an untimed fan-out of 4; JSON
                                                   seconds, and this process's CPU seconds
    python driver.py APP chord COUNT               a chord of COUNT add tasks and a sum,
                                                   after an untimed one of 4; the same

APP is a module of bench/apps exposing worker_command and either enqueue, send_ping,
send_scans and send_warm (suites 1-5) or FORMS and CHORD (suites 6 and 7: fan_*.py). Every
result gathered is checked against what the tasks return. This file imports nothing of
forkq, so that it runs in the peers' virtualenv as well.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent / "apps"))

import counter

WARM_UP = 4


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("app")
    parser.add_argument(
        "action",
        choices=["command", "enqueue", "latency", "scan", "warm", "forms", "fanout", "chord"],
    )
    parser.add_argument("count", type=int, nargs="?", default=0)
    parser.add_argument("gap_ms", type=float, nargs="?", default=0.0)
    parser.add_argument("--bulk", action="store_true")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--form", default="")
    options = parser.parse_args()
    app = importlib.import_module(options.app)
    if options.action in ("forms", "fanout", "chord"):
        print(json.dumps(fan_in(app, options)))
    elif options.action == "command":
        print(json.dumps(app.worker_command(options.count)))
    elif options.action in ("enqueue", "scan", "warm"):
        started = time.perf_counter()
        if options.action == "enqueue":
            app.enqueue(options.count, options.bulk)
        elif options.action == "scan":
            app.send_scans(options.count)
        else:
            app.send_warm(options.count)
        print(json.dumps({"seconds": time.perf_counter() - started}))
    else:
        print(json.dumps({"ms": latencies(app, options)}))


def fan_in(app: Any, options: argparse.Namespace) -> dict[str, Any]:
    """Suites 6 and 7: what the app offers, or the seconds of one fan-out or chord, from the
    first send to the last result in hand (or the body's), and the CPU time this process
    spent on it. A first, untimed one opens this process's connections and waits out the
    worker's start."""
    if options.action == "forms":
        return {"forms": list(app.FORMS), "chord": app.CHORD is not None}
    count, timeout = options.count, options.timeout
    if options.action == "fanout":
        run = app.FORMS[options.form]
        expected: Any = [2 * i for i in range(count)]
        warm: Any = [2 * i for i in range(WARM_UP)]
    else:
        run = app.CHORD
        expected, warm = count * (count - 1), WARM_UP * (WARM_UP - 1)
    if run(WARM_UP, timeout) != warm:
        raise SystemExit(f"{options.app}: the warm-up's results are wrong")
    started, cpu = time.perf_counter(), time.process_time()
    got = run(count, timeout)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if got != expected:
        raise SystemExit(f"{options.app} {options.action} {options.form}: wrong results")
    return {"seconds": seconds, "cpu": cpu}


def latencies(app: object, options: argparse.Namespace) -> list[float]:
    waiter = counter.client()
    for _ in range(WARM_UP):  # untimed: this process's connections and both children warm
        app.send_ping()  # type: ignore[attr-defined]
        if waiter.blpop([counter.DONE], timeout=options.timeout) is None:
            raise SystemExit(f"a ping task did not run within {options.timeout} s")
    samples = []
    for _ in range(options.count):
        if options.gap_ms:
            time.sleep(options.gap_ms / 1000)  # an idle gap is the workload here
        sent = time.perf_counter()
        app.send_ping()  # type: ignore[attr-defined]
        if waiter.blpop([counter.DONE], timeout=options.timeout) is None:
            raise SystemExit(f"a ping task did not run within {options.timeout} s")
        samples.append((time.perf_counter() - sent) * 1000)
    return samples


if __name__ == "__main__":
    main()
