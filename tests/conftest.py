"""Shared fixtures: throwaway SQLite URLs and real `forkq worker` processes; `cluster`, hosts
in network namespaces for multi-host tests (tests/hosts/__init__.py says how to use them).

Every worker a test starts runs in its own session (process group); teardown kills that group
and nothing else, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from forkq import Forkq, ResultTimeout
from tests.hosts.fixture import cluster  # noqa: F401  (the fixture, for every test)
from tests.ports import server_port  # noqa: F401  (imported from here by many tests)
from tests.processes import CollectedProcess
from tests.redis_cluster import (  # noqa: F401  (the fixture, for every test)
    clean_shared,
    cluster_test_url,
    redis_cluster,
)
from tests.redis_sentinel import sentinel_group  # noqa: F401  (the fixture, for every test)
from tests.redis_servers import (  # noqa: F401  (the fixtures, for every test)
    private_redis,
    private_tls_redis,
)

PING_TIMEOUT = 30.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks what the other Pythons' runs leave out (pyproject.toml says why): `redis_cluster`,
    a test on the Redis Cluster (an engine suite's `redis-cluster` parameter); `server_e2e`,
    an end-to-end test of an every-engine module on an engine other than the embedded SQLite;
    `browser`, a test that drives Chromium."""
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        params = item.callspec.params if hasattr(item, "callspec") else {}  # parametrized only
        if "redis-cluster" in params.values():
            item.add_marker(pytest.mark.redis_cluster)
        if params.get("every_broker_url", "sqlite") != "sqlite":
            item.add_marker(pytest.mark.server_e2e)
        if "browser" in item.fixturenames:
            item.add_marker(pytest.mark.browser)


REDIS = "redis://127.0.0.1:6379/15"  # a database of the tests' own; keys under a unique prefix


def redis_test_url(**params: object) -> str:
    query = "&".join(
        f"{k}={v}" for k, v in {"prefix": f"forkq-test-{uuid.uuid4().hex[:10]}", **params}.items()
    )
    return f"{REDIS}?{query}"


AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"  # queues under a unique prefix, x-expires set


def amqp_test_url(**params: object) -> str:
    settings = {"prefix": f"forkq-test-{uuid.uuid4().hex[:10]}", "expires": 300, **params}
    return f"{AMQP}?" + "&".join(f"{k}={v}" for k, v in settings.items())


def amqp_reachable() -> bool:

    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=2):
            return True
    except OSError:
        return False


def drop_amqp_streams(url: str) -> None:
    """A stream takes no x-expires: delete the control members stream (the test's workers'
    agents make it), best effort."""
    from urllib.parse import parse_qs, urlsplit

    import pika
    import pika.exceptions

    prefixes = parse_qs(urlsplit(url).query).get("prefix")
    if not prefixes:  # a test of the default prefix starts no worker of its own there
        return
    prefix = prefixes[0]
    with contextlib.suppress(pika.exceptions.AMQPError, OSError):
        connection = pika.BlockingConnection(pika.URLParameters(AMQP))
        try:
            connection.channel().queue_delete(f"{prefix}.control.members")
        finally:
            connection.close()


def redis_reachable() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def engine_url(engine: str, url: str) -> Iterator[str]:
    """Yield the URL if its server is up (with CI=true a missing server fails), then delete
    whatever the test left under its key prefix."""
    if engine.startswith("amqp"):
        if not amqp_reachable():
            if os.environ.get("CI") == "true":
                pytest.fail("RabbitMQ is not reachable on 127.0.0.1:5672 (CI=true: no skipping)")
            pytest.skip("no RabbitMQ on 127.0.0.1:5672 (scripts/ensure-services starts one)")
        yield url  # its queues expire on their own (x-expires) once unused
        drop_amqp_streams(url)
        return
    if engine == "redis-cluster":  # on the run's own cluster (tests/redis_cluster.py)
        yield url
        clean_shared(url)
        return
    if engine != "redis":
        yield url
        return
    if not redis_reachable():
        if os.environ.get("CI") == "true":
            pytest.fail("Redis is not reachable on 127.0.0.1:6379 (CI=true: no skipping)")
        pytest.skip("no Redis on 127.0.0.1:6379 (scripts/ensure-services starts one)")
    yield url
    import redis

    prefix = url.split("prefix=")[1].split("&")[0]
    client = redis.Redis.from_url(REDIS)
    for pattern in (f"{{{prefix}:*", f"{prefix}:*"):
        for key in client.scan_iter(match=pattern, count=1000):
            client.delete(key)
    client.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/forkq.sqlite3"


E2E_APP = textwrap.dedent(
    """
    import os, time
    from forkq import Forkq, SoftTimeLimitExceeded

    app = Forkq("e2e")

    @app.task
    def add(x, y):
        return x + y

    @app.task
    def ping():
        return os.getpid()

    @app.task
    def slow_add(x, y, seconds):
        time.sleep(seconds)
        return x + y

    @app.task
    def announce_then_sleep(fifo, seconds):
        with open(fifo, "w") as announce:
            announce.write(f"started {os.getpid()}\\n")
        time.sleep(seconds)

    @app.task
    def sleep_soft(seconds):
        try:
            time.sleep(seconds)
        except SoftTimeLimitExceeded:
            return "cleaned up"

    @app.task(time_limit=0.5)
    def capped_sleep(seconds):
        time.sleep(seconds)

    HELD = []

    @app.task
    def hog(megabytes):
        HELD.append(bytearray(megabytes * 2**20))
        return os.getpid()

    @app.task
    def shout(char, length, times):
        for _ in range(times):
            print(char * length)
        return times

    if os.environ.get("E2E_PRELOAD_MB"):  # GC-tracked containers, ~100 bytes each
        PRELOADED = [[i, i + 1] for i in range(int(os.environ["E2E_PRELOAD_MB"]) * 10_000)]

    @app.task
    def collector():
        import gc
        return {"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}

    @app.task
    def full_collection():
        import gc
        gc.collect()
        return os.getpid()

    @app.task(bind=True)
    def counted(self, counter_url, seconds, key="runs"):
        import redis
        redis.Redis.from_url(counter_url).hincrby(key, self.request.id, 1)
        time.sleep(seconds)
        return self.request.id

    COUNTERS = {}  # one connection per child: these tasks must be quick

    @app.task(bind=True, ignore_result=True)
    def counted_quietly(self, counter_url, seconds, key="runs"):
        import redis
        counter = COUNTERS.setdefault(counter_url, redis.Redis.from_url(counter_url))
        counter.hincrby(key, self.request.id, 1)
        time.sleep(seconds)
        counter.rpush(f"{key}:done", self.request.id)

    @app.task
    def die():
        os._exit(1)

    HOOKED = []  # pids of the processes that ran the after-fork hooks

    @app.on_after_fork
    def note_hook():
        HOOKED.append(os.getpid())

    @app.task
    def where():
        return {"pid": os.getpid(), "parent": os.getppid(), "hooked": HOOKED}

    @app.task(bind=True)
    def deliveries(self):
        return self.request.delivery_count

    @app.task
    def add_later(x, y):  # publishes from inside a task
        return add.delay(x, y).id

    @app.task
    def unstorable():
        return object()

    if os.environ.get("E2E_CRASH_IDLE"):
        import signal

        @app.on_after_fork
        def crash_soon():  # dies idle, 50 ms after booting: an environment failing
            signal.signal(signal.SIGALRM, lambda *_: os._exit(9))
            signal.setitimer(signal.ITIMER_REAL, 0.05)

    if os.environ.get("E2E_FAIL_BOOT"):
        @app.on_after_fork
        def broken_hook():
            raise RuntimeError("cannot connect to the database")
    """
)


class WorkerProcess(CollectedProcess):
    """A `forkq worker` subprocess in its own process group (tests/processes.py)."""

    def __init__(self, app_dir: Path, url: str, *args: str, env: dict[str, str] | None = None):
        env = {**os.environ, "FORKQ_BROKER_URL": url, "PYTHONUNBUFFERED": "1", **(env or {})}
        if results := results_url_for(url, app_dir):
            env["FORKQ_RESULT_BACKEND"] = results
        argv = [sys.executable, "-m", "forkq", "worker", "-A", "e2eapp", *args]
        super().__init__(argv, app_dir, env)

    def children(self) -> list[int]:
        """Its master's children, but not its control agent (every worker on Redis or
        RabbitMQ forks one, titled "... agent"): what tests count are the pool's processes."""
        return [pid for pid in super().children() if not _is_agent(pid)]

    def agent(self) -> int | None:
        """The pid of its control agent, if it runs one."""
        return next((pid for pid in super().children() if _is_agent(pid)), None)


def _is_agent(pid: int) -> bool:
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip()
        return title.endswith(b" agent")
    except OSError:  # gone already: counted as it was, a child
        return False


@pytest.fixture
def e2e_dir(tmp_path: Path) -> Path:
    (tmp_path / "e2eapp.py").write_text(E2E_APP)
    return tmp_path


@pytest.fixture
def broker_url(sqlite_url: str) -> str:
    """The broker end-to-end tests run on; a test module may run them on every engine."""
    return sqlite_url


@pytest.fixture(params=["sqlite", "redis", "redis-cluster", "amqp"])
def every_broker_url(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[str]:
    """For modules whose end-to-end tests run on every engine: they define
    `broker_url` to return this."""
    urls = {
        "sqlite": lambda: sqlite_url,
        "redis": redis_test_url,
        "redis-cluster": cluster_test_url,
        "amqp": amqp_test_url,
    }
    yield from engine_url(request.param, urls[request.param]())


def results_url_for(broker_url: str, app_dir: Path) -> str | None:
    """RabbitMQ keeps no results: its tests keep them in a SQLite file beside the app."""
    if broker_url.startswith("amqp"):
        return f"sqlite:///{app_dir}/results.sqlite3"
    return None


def with_param(url: str, name: str, value: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{name}={value}"


@pytest.fixture
def client(e2e_dir: Path, broker_url: str) -> Iterator[Forkq]:
    app = Forkq("e2e", broker=broker_url, backend=results_url_for(broker_url, e2e_dir))
    yield app
    app.close()


@pytest.fixture
def start_worker(e2e_dir: Path, broker_url: str) -> Iterator[object]:
    with contextlib.ExitStack() as started:  # stops every worker, even if one stop fails

        def start(*args: str, env: dict[str, str] | None = None) -> WorkerProcess:
            worker = WorkerProcess(e2e_dir, broker_url, *args, env=env)
            started.callback(worker.stop)
            return worker

        yield start


class StartedSignal:
    """A FIFO a task writes to when it starts; the test waits on it with a bounded select."""

    def __init__(self, directory: Path, name: str = "started") -> None:
        self.path = str(directory / f"{name}-{time.monotonic_ns()}.fifo")
        os.mkfifo(self.path)
        self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)

    def wait(self, timeout: float = 30.0) -> int:
        """Returns the pid of the process running the task."""
        try:
            readable, _, _ = select.select([self._fd], [], [], timeout)
            assert readable, f"task did not start within {timeout}s"
            word, pid = os.read(self._fd, 100).split()
            assert word == b"started"
            return int(pid)
        finally:
            os.close(self._fd)


def wait_until_serving(client: Forkq, worker: WorkerProcess) -> None:
    """Event-based readiness: a ping task answered by the worker (failing fast if it died)."""
    ping = client.send_task("e2eapp.ping")
    deadline = time.monotonic() + PING_TIMEOUT
    while time.monotonic() < deadline:
        if worker.proc.poll() is not None:
            pytest.fail(f"worker exited with {worker.proc.returncode}:\n{worker.log()}")
        with contextlib.suppress(ResultTimeout):
            ping.get(timeout=0.5)
            return
    pytest.fail(f"worker not serving after {PING_TIMEOUT}s:\n{worker.log()}")


def survive_outage(
    client: Forkq, worker: WorkerProcess, stop: Callable[[], object], start: Callable[[], object]
) -> None:
    """300 tasks in flight when the broker stops, then starts again: every task completes, the
    worker stays up and logs one line per outage and process, not one per attempt."""
    from forkq.envelope import make_message

    wait_until_serving(client, worker)
    queue = client.settings.default_queue
    calls = [make_message("e2eapp.slow_add", [i, 0, 0.01], {}, queue=queue) for i in range(300)]
    results = client.publish_many(calls)
    results[30].get(timeout=60)
    stop()
    try:
        worker.wait_for_log("unreachable")
    finally:
        start()
    assert [r.get(timeout=120) for r in results] == list(range(300))
    # The line goes through the master's relay: it can land after the last result does.
    worker.wait_for_log("reachable again")
    log = worker.log()
    # One line per outage and process and connection, not one per attempt: the master's
    # broker, each child's broker and result backend, the control agent's channel.
    assert log.count("unreachable") <= 6, log
    assert worker.proc.poll() is None
