"""End to end: a real worker with `--metrics-port` serves what it ran, parsed with
prometheus_client's own parser; counters never go backwards when children die or are
recycled; /healthz and /readyz answer as Kubernetes probes expect; a client that sends nothing
stalls nothing; a bad port is one line."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from forkq import Forkq, TaskFailed
from forkq.envelope import make_message
from forkq.result import AsyncResult
from tests.commands import forkq
from tests.conftest import (
    E2E_APP,
    StartedSignal,
    WorkerProcess,
    engine_url,
    redis_test_url,
    server_port,
    wait_until_serving,
)
from tests.redis_servers import PrivateRedis, running
from tests.redis_servers import need_programs as need

pytestmark = pytest.mark.timeout(120)

METRICS_APP = (
    E2E_APP
    + '''

@app.task
def boom():
    raise ValueError("boom")

@app.task(bind=True, max_retries=1)
def flaky(self):
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return "second try"

@app.task
def announce_once(fifo, seconds):
    """Says it started if the test still listens (not when it runs again), then sleeps."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return "again"
    os.write(fd, f"started {os.getpid()}\\n".encode())
    os.close(fd)
    time.sleep(seconds)
    return "first"
'''
)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana-forkq.json"


@pytest.fixture
def e2e_dir(tmp_path: Path) -> Path:
    (tmp_path / "e2eapp.py").write_text(METRICS_APP)
    return tmp_path


@pytest.fixture
def broker_url(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[str]:
    """SQLite, unless a test asks for others (`on_every_engine`)."""
    engine = getattr(request, "param", "sqlite")
    urls = {"sqlite": lambda: sqlite_url, "redis": redis_test_url}
    yield from engine_url(engine, urls[engine]())


on_every_engine = pytest.mark.parametrize("broker_url", ["sqlite", "redis"], indirect=True)


def get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        return reply.status, reply.read().decode()
    finally:
        conn.close()


def scrape(port: int) -> Samples:
    status, text = get(port, "/metrics")
    assert status == 200, text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape_until(port: int, holds: Callable[[Samples], bool], timeout: float = 30) -> Samples:
    """Scrapes until `holds`: a child counts a task just after its result is stored, and the
    master reaps a dead child a moment after it died; a scrape says when, nothing else does."""
    deadline = time.monotonic() + timeout
    while not holds(samples := scrape(port)):
        assert time.monotonic() < deadline, f"not within {timeout}s: {samples}"
        time.sleep(0.05)
    return samples


def tasks(samples: Samples, task: str, state: str) -> float:
    return samples.get(("forkq_tasks_total", (("state", state), ("task", f"e2eapp.{task}"))), 0)


def exits(samples: Samples, reason: str) -> float:
    return samples[("forkq_child_exits_total", (("reason", reason),))]


def publish(client: Forkq, task: str, calls: list[tuple[Any, ...]]) -> list[AsyncResult]:
    queue = client.settings.default_queue
    return client.publish_many([make_message(task, list(a), {}, queue=queue) for a in calls])


def served(start_worker: Any, client: Forkq, *args: str) -> tuple[WorkerProcess, int]:
    port = server_port()
    worker = start_worker("-l", "info", "--metrics-port", str(port), *args)
    wait_until_serving(client, worker)  # one e2eapp.ping ran
    return worker, port


@on_every_engine
def test_a_scrape_says_what_ran_by_task_and_outcome(client: Forkq, start_worker: Any) -> None:
    worker, port = served(start_worker, client, "-c", "2")
    assert f"metrics:     http://0.0.0.0:{port}/metrics, /healthz, /readyz" in worker.log()
    adds = publish(client, "e2eapp.add", [(i, i) for i in range(20)])
    booms = publish(client, "e2eapp.boom", [()] * 3)
    flakies = publish(client, "e2eapp.flaky", [()] * 2)
    assert [r.get(timeout=60) for r in adds] == [2 * i for i in range(20)]
    assert [r.get(timeout=60) for r in flakies] == ["second try"] * 2
    for r in booms:
        with pytest.raises(TaskFailed):
            r.get(timeout=60)
    samples = scrape_until(port, lambda s: tasks(s, "flaky", "succeeded") == 2)
    samples = scrape_until(port, lambda s: tasks(s, "boom", "failed") == 3)
    assert tasks(samples, "add", "succeeded") == 20 and tasks(samples, "add", "failed") == 0
    assert tasks(samples, "flaky", "retried") == 2
    assert tasks(samples, "ping", "succeeded") == 1
    runs = [
        ("forkq_task_runtime_seconds_count", (("task", f"e2eapp.{t}"),)) for t in ("add", "flaky")
    ]
    assert [samples[k] for k in runs] == [20, 4]  # a retried run ran too
    assert (
        samples[("forkq_children", (("state", "idle"),))]
        + samples[("forkq_children", (("state", "busy"),))]
        == 2
    )
    assert samples[("forkq_concurrency", ())] == 2
    assert exits(samples, "crashed") == 0 and samples[("forkq_dead_letters_total", ())] == 0
    assert ("forkq_queue_messages", (("queue", "default"),)) in samples
    assert samples[("forkq_broker_up", ())] == 1
    for process, slot in [("master", ""), ("child", "0"), ("child", "1")]:
        pss = samples[("forkq_process_pss_bytes", (("process", process), ("slot", slot)))]
        uss = samples[("forkq_process_uss_bytes", (("process", process), ("slot", slot)))]
        assert 0 < uss <= pss
    info = ("forkq_worker_info", (("hostname", socket.gethostname()),))
    assert samples[info] == 1
    assert get(port, "/healthz") == (200, "ok\n") and get(port, "/readyz") == (200, "ready\n")
    served_names = {name for name, _ in samples}
    shown = set(re.findall(r"forkq_\w+", DASHBOARD.read_text()))
    assert shown and shown <= served_names, shown - served_names  # the dashboard's metrics


@on_every_engine
def test_counters_never_go_backwards_when_children_die_or_are_recycled(
    client: Forkq, start_worker: Any, e2e_dir: Path
) -> None:
    worker, port = served(start_worker, client, "-c", "2", "--max-tasks-per-child", "10")
    results = publish(client, "e2eapp.add", [(i, 1) for i in range(50)])
    assert [r.get(timeout=60) for r in results] == [i + 1 for i in range(50)]
    before = scrape_until(port, lambda s: tasks(s, "add", "succeeded") == 50)
    assert exits(before, "max_tasks") >= 3  # recycled children's counts were kept
    started = StartedSignal(e2e_dir)
    once = client.send_task("e2eapp.announce_once", (started.path, 30))
    victim = started.wait()  # busy with it
    os.kill(victim, signal.SIGKILL)
    assert once.get(timeout=60) == "again"  # it ran again elsewhere
    after = scrape_until(port, lambda s: tasks(s, "announce_once", "succeeded") == 1)
    assert tasks(after, "announce_once", "lost") == 1
    assert exits(after, "crashed") == 1
    for key, value in before.items():
        if key[0].endswith(("_total", "_count", "_bucket", "_sum")):
            assert after.get(key, 0) >= value, key
    assert tasks(after, "add", "succeeded") == 50
    assert worker.proc.poll() is None


def test_readyz_says_stopping_during_a_warm_shutdown_while_healthz_stays_ok(
    client: Forkq, start_worker: Any, e2e_dir: Path
) -> None:
    worker, port = served(start_worker, client, "-c", "1")
    started = StartedSignal(e2e_dir)
    client.send_task("e2eapp.announce_once", (started.path, 2))
    started.wait()
    worker.signal(signal.SIGTERM)
    worker.wait_for_log("warm shutdown")
    assert get(port, "/readyz") == (503, "not ready: stopping\n")
    assert get(port, "/healthz") == (200, "ok\n")  # the loop is alive: no restart wanted
    assert worker.wait(timeout=30) == 0


def test_after_a_hup_the_re_executed_master_serves_the_port_again(
    client: Forkq, start_worker: Any
) -> None:
    worker, port = served(start_worker, client, "-c", "1")
    first = scrape(port)[("forkq_worker_start_time_seconds", ())]
    worker.signal(signal.SIGHUP)  # the check does not bind the port: it would be in use
    worker.wait_for_log("starting 1 children", count=2)  # the re-executed master is up
    assert client.send_task("e2eapp.add", (1, 2)).get(timeout=60) == 3
    again = scrape_until(port, lambda s: tasks(s, "add", "succeeded") == 1)
    assert again[("forkq_worker_start_time_seconds", ())] > first  # a new process's counts
    assert tasks(again, "ping", "succeeded") == 0
    assert "HUP refused" not in worker.log()


def test_a_client_that_sends_nothing_stalls_nothing(client: Forkq, start_worker: Any) -> None:
    _, port = served(start_worker, client, "-c", "2")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as silent:
        partial = socket.create_connection(("127.0.0.1", port), timeout=10)
        partial.sendall(b"GET /metr")  # and no more
        results = publish(client, "e2eapp.add", [(i, i) for i in range(50)])
        assert [r.get(timeout=30) for r in results] == [2 * i for i in range(50)]
        asked = time.monotonic()
        assert scrape_until(port, lambda s: tasks(s, "add", "succeeded") == 50)
        assert time.monotonic() - asked < 5  # not after the silent ones' deadline
        assert silent.recv(10) == b""  # then closed unanswered at its deadline (5 s)
        partial.close()


@pytest.mark.slow
def test_readyz_follows_the_broker_on_the_default_redis_url(tmp_path: Path, e2e_dir: Path) -> None:
    """A plain redis://host:port/0 URL, no options: the master beats every 10 s, so each
    change shows within about that."""
    need("redis-server")
    with running(PrivateRedis(tmp_path)) as redis_server:
        client = Forkq("e2e", broker=redis_server.url)
        port = server_port()
        worker = WorkerProcess(e2e_dir, redis_server.url, "-c", "1", "--metrics-port", str(port))
        try:
            wait_until_serving(client, worker)
            assert get(port, "/readyz") == (200, "ready\n")
            redis_server.stop()
            status = _until(lambda: get(port, "/readyz"), lambda r: r[0] == 503, timeout=30)
            assert status == (503, "not ready: the broker did not answer the last heartbeat\n")
            assert get(port, "/healthz") == (200, "ok\n")
            assert scrape(port)[("forkq_broker_up", ())] == 0
            redis_server.start()
            _until(lambda: get(port, "/readyz"), lambda r: r[0] == 200, timeout=30)
            assert scrape(port)[("forkq_broker_up", ())] == 1
        finally:
            worker.stop()
            client.close()


def _until(read: Callable[[], Any], holds: Callable[[Any], bool], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not holds(value := read()):
        assert time.monotonic() < deadline, f"still {value!r} after {timeout}s"
        time.sleep(0.1)
    return value


@pytest.mark.parametrize(
    ("port", "hint"),
    [
        ("abc", "'abc': give a TCP port from 1 to 65535"),
        ("0", "'0': give a TCP port from 1 to 65535"),
        ("70000", "'70000': give a TCP port from 1 to 65535"),
    ],
)
def test_a_bad_metrics_port_is_one_line(e2e_dir: Path, port: str, hint: str) -> None:
    done = forkq(e2e_dir, "worker", "-A", "e2eapp", "--metrics-port", port)
    assert (done.returncode, done.stdout) == (2, "")
    [line] = done.stderr.splitlines()
    assert line.startswith("forkq: error: Invalid value for '--metrics-port': ") and hint in line


def test_a_bad_port_from_the_environment_is_named_by_its_variable(e2e_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORKQ_")}
    done = subprocess.run(
        [sys.executable, "-m", "forkq", "worker", "-A", "e2eapp"],
        cwd=e2e_dir,
        env={**env, "FORKQ_METRICS_PORT": "http", "FORKQ_CONTROL_DIR": str(e2e_dir / "c")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert "FORKQ_METRICS_PORT='http': give a TCP port from 1 to 65535" in line


def test_a_port_in_use_stops_the_worker_before_it_forks_with_one_line(e2e_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = forkq(
            e2e_dir, "worker", "-A", "e2eapp", "--metrics-host", "127.0.0.1",
            "--metrics-port", str(port),
        )  # fmt: skip
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line == (
        f"forkq: error: cannot serve metrics on 127.0.0.1:{port}: Address already in use; "
        "free the port or choose another with --metrics-port (--metrics-host for the address)"
    )
