"""The control round trip: how long `app.control.inspect("ping")` takes to get both replies
from two workers (each with its agent) over the broker; p50, p90 and the worst, in ms.

    .venv/bin/python bench/control.py [--pings 50] [--broker redis|amqp|both]
                                      [--python PATH] [--json]

A round trip is the client's: read the members, publish the request, each agent's receipt and
its relay to its master over the master's control socket, the two replies. The client's inbox
is opened once, before the first timed ping (as a process that inspects often keeps it).
Redis keys live under a prefix of the run's own in database 14 (bench/harness.py's) and are
deleted after; RabbitMQ names under a prefix of its own (queues exclusive or expiring; the
members stream deleted after). `run_control` is what bench/compare.py can call.
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
from typing import Any

import redis

REDIS = "redis://127.0.0.1:6379/14"
AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"
APP = "from forkq import Forkq\n\napp = Forkq('ctlbench')\n\n@app.task\ndef noop():\n    pass\n"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_control(
    pings: int = 50, broker: str = "redis", python: str = sys.executable
) -> dict[str, Any]:
    """Start two workers, time `pings` pings once both answer, stop them."""
    from forkq import Forkq  # the interpreter running this bench has forkq installed

    prefix = f"forkq-bench-control-{uuid.uuid4().hex[:8]}"
    url = f"{REDIS}?prefix={prefix}" if broker == "redis" else f"{AMQP}?prefix={prefix}&expires=600"
    with tempfile.TemporaryDirectory() as scratch:
        Path(scratch, "ctlbench.py").write_text(APP)
        env = {**os.environ, "FORKQ_BROKER_URL": url, "PYTHONPATH": scratch}
        env |= {"FORKQ_CONTROL_DIR": f"{scratch}/control", "FORKQ_RESULT_BACKEND": "memory://x"}
        command = [python, "-m", "forkq", "worker", "-A", "ctlbench", "-c", "1", "-l", "warning"]
        workers = [
            subprocess.Popen([*command, "-n", name], cwd=scratch, env=env, start_new_session=True)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pings", type=int, default=50)
    parser.add_argument("--broker", choices=["redis", "amqp", "both"], default="both")
    parser.add_argument("--python", default=sys.executable, help="the interpreter with forkq")
    parser.add_argument("--json", action="store_true", help="one JSON object per broker")
    args = parser.parse_args()
    for broker in ("redis", "amqp") if args.broker == "both" else (args.broker,):
        result = run_control(args.pings, broker, args.python)
        if args.json:
            print(json.dumps(result))
            continue
        print(f"control round trip on {broker}: ping to 2 workers, {result['pings']} pings")
        for name in ("min", "p50", "p90", "max"):
            print(f"  {name:>4}: {result[f'{name}_ms']:7.2f} ms")


if __name__ == "__main__":
    main()
