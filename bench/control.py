"""Suite 8, the control round trip: how long `app.control.inspect("ping")` takes to get both
replies from two workers (each with its agent) over the broker, on Redis and on RabbitMQ.

    .venv/bin/python bench/control.py [--pings 200] [--broker redis|amqp|both]
                                      [--python PATH] [--json]

    bench/compare.py --suites control [--control-pings 200]    (`run_suite`: in the page)

A round trip is the client's: read the members, publish the request, each agent's receipt and
its relay to its master over the master's control socket, the two replies. Two workers of one
child each run from forkq's bench virtualenv; once both answer, the client sends its pings one
after another, each awaited, and every one must be answered by both. The client's inbox is
opened once, before the first timed ping (as a process that inspects often keeps it). Figures
are p50, p95 and the worst of the pings, in ms. Redis keys live under a prefix of the run's
own in database 14 (bench/harness.py's) and are deleted after; RabbitMQ names under a prefix
of its own (queues exclusive or expiring; the members stream deleted after).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO, Any

import redis
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

REDIS = "redis://127.0.0.1:6379/14"
AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"
APP = "from forkq import Forkq\n\napp = Forkq('ctlbench')\n\n@app.task\ndef noop():\n    pass\n"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


BROKERS = ("redis", "amqp")


def run_control(
    pings: int = 200,
    broker: str = "redis",
    python: str = sys.executable,
    log: IO[bytes] | None = None,
) -> dict[str, Any]:
    """Start two workers (their output to `log`, if given), time `pings` pings once both
    answer, stop them."""
    from forkq import Forkq  # the interpreter running this bench has forkq installed

    prefix = f"forkq-bench-control-{uuid.uuid4().hex[:8]}"
    url = f"{REDIS}?prefix={prefix}" if broker == "redis" else f"{AMQP}?prefix={prefix}&expires=600"
    with tempfile.TemporaryDirectory() as scratch:
        Path(scratch, "ctlbench.py").write_text(APP)
        env = {**os.environ, "FORKQ_BROKER_URL": url, "PYTHONPATH": scratch}
        env |= {"FORKQ_CONTROL_DIR": f"{scratch}/control", "FORKQ_RESULT_BACKEND": "memory://x"}
        command = [python, "-m", "forkq", "worker", "-A", "ctlbench", "-c", "1", "-l", "warning"]
        workers = [
            subprocess.Popen(
                [*command, "-n", name],
                cwd=scratch,
                env=env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
            for name in ("b1", "b2")
        ]
        app = Forkq("ctlbench", broker=url)
        try:
            _await_both(app, workers)
            times = []
            for _ in range(pings):
                started = time.perf_counter()
                got = app.control.inspect("ping", timeout=5)
                times.append((time.perf_counter() - started) * 1000)
                assert sorted(got.replies) == ["b1", "b2"], got
        finally:
            app.close()
            for worker in workers:
                os.killpg(worker.pid, signal.SIGTERM)
            for worker in workers:
                worker.wait(timeout=60)
            _clean(broker, prefix)
    return {
        "broker": broker,
        "workers": 2,
        "pings": len(times),
        "p50_ms": statistics.median(times),
        "p90_ms": percentile(times, 0.90),
        "p95_ms": percentile(times, 0.95),
        "max_ms": max(times),
        "min_ms": min(times),
    }


def _await_both(app: Any, workers: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert all(w.poll() is None for w in workers), "a worker exited"
        if app.control.inspect("ping", timeout=0.5).replies.keys() == {"b1", "b2"}:
            return
    raise RuntimeError("the workers' agents did not answer within 60 s")


def _clean(broker: str, prefix: str) -> None:
    if broker == "redis":
        client = redis.Redis.from_url(REDIS)
        for pattern in (f"{{{prefix}:*", f"{prefix}:*"):
            for name in client.scan_iter(match=pattern, count=1000):
                client.delete(name)
        client.close()
        return
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(AMQP))
    try:
        connection.channel().queue_delete(f"{prefix}.control.members")
    finally:
        connection.close()


def run_suite(python: str, pings: int, progress: Progress, log: IO[bytes]) -> dict[str, Any]:
    """Suite 8 on each broker, with forkq's interpreter `python`: the record's "control"."""
    bar = progress.add_task("control", total=len(BROKERS))
    results = {}
    for broker in BROKERS:
        progress.update(bar, description=f"control: {broker}")
        results[broker] = run_control(pings, broker, python, log)
        progress.advance(bar)
    return {"pings": pings, "workers": 2, "results": results}


def console_table(control: dict[str, Any], console: Console) -> None:
    table = Table(title=f"Suite 8: control round trip, inspect ping to 2 workers, "
                  f"{control['pings']} pings")  # fmt: skip
    for column in ("broker", "p50 ms", "p95 ms", "max ms"):
        table.add_column(column, justify="right")
    for broker, r in control["results"].items():
        table.add_row(broker, *(f"{r[f'{name}_ms']:.2f}" for name in ("p50", "p95", "max")))
    console.print(table)


def control_section(control: dict[str, Any]) -> list[str]:
    """The page's section on suite 8."""
    method = "\n\n".join(p.strip() for p in (__doc__ or "").split("\n\n")[3:])
    names = {"redis": "Redis", "amqp": "RabbitMQ"}
    rows = [
        f"| {names.get(broker, broker)} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} "
        f"| {r['max_ms']:.2f} |"
        for broker, r in control["results"].items()
    ]
    return [
        "## Control round trip (suite 8)",
        "",
        method,
        "",
        f"Run on {control['date']}: {control['pings']} pings per broker, "
        f"{control['workers']} workers.",
        "",
        "| broker | p50 ms | p95 ms | worst ms |",
        "| --- | --- | --- | --- |",
        *rows,
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pings", type=int, default=200)
    parser.add_argument("--broker", choices=["redis", "amqp", "both"], default="both")
    parser.add_argument("--python", default=sys.executable, help="the interpreter with forkq")
    parser.add_argument("--json", action="store_true", help="one JSON object per broker")
    args = parser.parse_args()
    for broker in BROKERS if args.broker == "both" else (args.broker,):
        result = run_control(args.pings, broker, args.python)
        if args.json:
            print(json.dumps(result))
            continue
        print(f"control round trip on {broker}: ping to 2 workers, {result['pings']} pings")
        for name in ("min", "p50", "p90", "p95", "max"):
            print(f"  {name:>4}: {result[f'{name}_ms']:7.2f} ms")


if __name__ == "__main__":
    main()
