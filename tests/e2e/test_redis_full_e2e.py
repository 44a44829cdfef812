"""A worker on a Redis server that fills up (maxmemory, noeviction): `delay()` fails at once
with `BrokerFull`; the worker runs what was queued, loses nothing and runs nothing twice; a
task whose result cannot be stored is not acked: its child stores it once there is room. A
worker on a server with an evicting policy says so when it starts."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from forkq import Forkq
from forkq.exceptions import BrokerFull
from tests.conftest import REDIS, WorkerProcess, wait_until_serving
from tests.engines.test_redis_full import FULL, fill, free
from tests.redis_servers import PrivateRedis, need_programs, running

pytestmark = pytest.mark.timeout(120)

QUEUED = 20


def private_server(tmp_path: Path, *extra: str) -> PrivateRedis:
    need_programs("redis-server")
    directory = tmp_path / "redis"
    directory.mkdir()
    return PrivateRedis(directory, extra=extra)


@pytest.fixture
def counter() -> Iterator[tuple[redis.Redis, str]]:
    """Where the tasks count their runs: the shared server (the private one is full), under a
    key of this test's own."""
    made, key = redis.Redis.from_url(REDIS), f"forkq-test-full-{uuid.uuid4().hex[:10]}"
    yield made, key
    made.delete(key, f"{key}:done")
    made.close()


def test_a_full_redis_refuses_delay_and_the_worker_runs_what_is_queued(
    tmp_path: Path, e2e_dir: Path, counter: tuple[redis.Redis, str]
) -> None:
    """Phase 1: tasks queued, then the server fills up: delay() is refused at once, the
    queued tasks all run, once each (their acks free memory: the server may have room again
    after). Phase 2: a task ends while the server is full: its result cannot be stored, so
    its message is not acked; its child keeps the outcome and stores it, then acks, once
    there is room: the task ran once."""
    counts, key = counter
    with running(private_server(tmp_path, *FULL)) as server:
        client = Forkq("e2e", broker=server.url)
        worker = WorkerProcess(e2e_dir, server.url, "-c", "2", "-l", "info")
        filler, broker = redis.Redis.from_url(server.url), client.broker
        queue = client.settings.default_queue
        try:
            wait_until_serving(client, worker)
            for _ in range(QUEUED):
                client.send_task("e2eapp.counted_quietly", args=[REDIS, 0.05, key])
            fill(filler)
            began = time.monotonic()
            with pytest.raises(BrokerFull, match="out of memory"):
                client.send_task("e2eapp.add", args=[5, 5])
            refused_in = time.monotonic() - began
            for n in range(QUEUED):  # each run says so as it ends: awaited, not polled
                assert counts.blpop([f"{key}:done"], timeout=30), f"{n} of {QUEUED} ran"
            assert {int(v) for v in counts.hgetall(key).values()} == {1}
            assert len(counts.hgetall(key)) == QUEUED  # all ran, once each
            # the last acks go with the children's next fetches, a moment after the runs end
            wait_for(lambda: broker.depth(queue).messages == 0, "ack of the last tasks")
            assert broker.dead_letters(queue) == []

            free(filler)
            stored_later = client.send_task("e2eapp.counted", args=[REDIS, 1.0, key])
            wait_for(lambda: counts.hexists(key, stored_later.id), "the task to start")
            fill(filler)  # while it runs: its result will find no room
            refused = "storing a task's outcome failed: redis broker: the Redis server is out"
            worker.wait_for_log(refused)  # the child keeps the outcome, tries again
            assert stored_later.state == "PENDING"  # nothing half-written: no result
            assert broker.depth(queue).messages == 1  # and its message not acked
            assert broker.dead_letters(queue) == []
            free(filler)
            assert stored_later.get(timeout=30) == stored_later.id
            worker.wait_for_log("storing a task's outcome working again")
            runs = int(counts.hget(key, stored_later.id) or 0)
            assert runs == 1  # not run again: its outcome waited in its child
            assert "exit code" not in worker.log()  # no child left
            wait_for(lambda: broker.depth(queue).messages == 0, "its ack")
            assert broker.dead_letters(queue) == []
            assert worker.proc.poll() is None
            assert "maxmemory-policy is" not in worker.log()  # noeviction: nothing to warn of
            print(
                f"\ndelay() refused in {refused_in * 1000:.1f} ms; {QUEUED} queued tasks ran "
                f"once each; the task whose store was refused ran {runs} time(s)"
            )
            assert refused_in < 1.0
        finally:
            worker.stop()
            filler.close()
            client.close()


TRACKED = """

@app.task(track_started=True)
def add_tracked(x, y):
    return x + y
"""


def test_a_task_that_starts_on_a_full_server_runs_and_its_outcome_waits_for_room(
    tmp_path: Path, e2e_dir: Path, counter: tuple[redis.Redis, str]
) -> None:
    """Its STARTED record finds no room: left out, the task runs all the same (rather than
    its child leaving, to run it again and again); its result waits in the child for room."""
    with (e2e_dir / "e2eapp.py").open("a") as app_file:
        app_file.write(TRACKED)
    counts, key = counter
    with running(private_server(tmp_path, *FULL)) as server:
        client = Forkq("e2e", broker=server.url)
        worker = WorkerProcess(e2e_dir, server.url, "-c", "1", "-l", "info")
        filler = redis.Redis.from_url(server.url)
        try:
            wait_until_serving(client, worker)
            busy = client.send_task("e2eapp.counted_quietly", args=[REDIS, 0.5, key])
            tracked = client.send_task("e2eapp.add_tracked", args=[1, 2])
            wait_for(lambda: counts.hexists(key, busy.id), "the first task to start")
            fill(filler)  # before the second starts: the one child is busy
            worker.wait_for_log("storing a task's outcome failed")  # it ran
            assert tracked.state == "PENDING"  # no STARTED: there was no room for it
            free(filler)
            assert tracked.get(timeout=30) == 3
            assert "exit code" not in worker.log()  # its child never left
        finally:
            worker.stop()
            filler.close()
            client.close()


def wait_for(check: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """A change on another server, which offers no event to await: polled, with a deadline."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"no {what} within {timeout}s"
        time.sleep(0.02)


def test_a_worker_warns_of_an_evicting_policy(tmp_path: Path, e2e_dir: Path) -> None:
    with running(private_server(tmp_path, "--maxmemory-policy", "allkeys-lru")) as server:
        worker = WorkerProcess(e2e_dir, server.url, "-c", "1", "-l", "info")
        try:
            log = worker.wait_for_log("maxmemory-policy is allkeys-lru", timeout=30)
            assert "WARNING" in log.split("maxmemory-policy is allkeys-lru")[0].splitlines()[-1]
            assert "messages would be lost" in log
        finally:
            worker.stop()
