"""The demo run: enqueue, start a 4-child worker, drain, measure, report memory.

Everything lives in a fresh temporary directory: the SQLite file and the worker's log.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

import msgspec
from rich.console import Console
from rich.progress import Progress

from forkq import Forkq
from forkq.demo.process import worker_process
from forkq.engines.registry import open_backend
from forkq.envelope import make_message
from forkq.pool.process_memory import process_tree_memory
from forkq.process_memory_report import memory_summary, memory_table
from forkq.result import AsyncResult, decode_record

BATCH = 200
TASK = "forkq.demo.app.basket_total"
READY_TASK = "forkq.demo.app.ready"


class DemoOptions(msgspec.Struct, frozen=True):
    tasks: int = 3000
    concurrency: int = 4
    timeout: float = 300.0


def run_demo(options: DemoOptions, console: Console) -> int:
    with tempfile.TemporaryDirectory(prefix="forkq-demo-") as workdir:
        url = f"sqlite:///{workdir}/forkq.sqlite3"
        client = Forkq("forkq-demo", broker=url)
        console.print(f"[bold]forkq demo[/]: broker and results in {url}")
        log_path = Path(workdir) / "worker.log"
        with (
            open(log_path, "wb") as log,
            worker_process(
                "forkq.demo.app", url, "-c", str(options.concurrency), "-l", "warning", output=log
            ) as worker,
        ):
            _run(client, worker.pid, options, console, log_path)
        client.close()
        console.print(f"worker stopped with SIGTERM, exit code {worker.returncode}")
        return 0 if worker.returncode == 0 else 1


def _run(
    client: Forkq, worker_pid: int, options: DemoOptions, console: Console, log_path: Path
) -> None:
    try:
        client.send_task(READY_TASK).get(timeout=options.timeout)
        _print_memory(worker_pid, "right after fork: the children share the table", console)
        results = _enqueue(client, options.tasks, console)
        _drain(results, options.timeout, console)
        _report_throughput(client, results, console)
        _print_memory(worker_pid, f"after {options.tasks} tasks read the table", console)
        console.print(
            "Reading a Python object writes its reference count, so each page a child "
            "touched became its own copy: that is the USS the children gained."
        )
    except BaseException:
        console.print(f"[red]worker log:[/]\n{log_path.read_text(errors='replace')}")
        raise


def _enqueue(client: Forkq, count: int, console: Console) -> list[AsyncResult]:
    rng = random.Random(7)
    results: list[AsyncResult] = []
    with Progress(console=console, transient=False) as progress:
        bar = progress.add_task("enqueue", total=count)
        while len(results) < count:
            size = min(BATCH, count - len(results))
            messages = [
                make_message(
                    TASK,
                    [[rng.randrange(300_000) for _ in range(20)]],
                    {},
                    queue=client.settings.default_queue,
                )
                for _ in range(size)
            ]
            results.extend(client.publish_many(messages))
            progress.advance(bar, size)
    return results


def _drain(results: list[AsyncResult], timeout: float, console: Console) -> None:
    deadline = time.monotonic() + timeout
    with Progress(console=console) as progress:
        bar = progress.add_task("execute", total=len(results))
        for result in results:
            result.get(timeout=max(0.1, deadline - time.monotonic()))
            progress.advance(bar)


def _print_memory(master_pid: int, moment: str, console: Console) -> None:
    rows = process_tree_memory(master_pid)
    console.print(memory_table(rows, title=f"Memory per process, {moment}"))
    console.print(memory_summary(rows))


def _report_throughput(client: Forkq, results: list[AsyncResult], console: Console) -> None:
    backend = open_backend(client.settings.backend_url)
    done = []
    for result in results:
        stored = backend.get(result.id)
        if stored is not None:
            done.append(decode_record(stored.payload).date_done or 0.0)
    backend.close()
    first, last = min(done), max(done)
    rate = (len(results) - 1) / max(last - first, 1e-9)
    console.print(
        f"{len(results)} tasks done in {last - first:.2f}s: "
        f"[bold]{rate:,.0f} tasks/s[/] (first to last completion)"
    )
