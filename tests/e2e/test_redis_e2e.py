"""Redis-specific end to end: a worker rides out a Redis restart and loses nothing."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis

from forkq import Forkq
from forkq.engines.contract import Consumer, Leftovers, ResultWrite, outgoing
from forkq.engines.registry import open_backend, open_broker
from forkq.envelope import make_message
from forkq.exceptions import BrokerError
from tests.conftest import WorkerProcess, survive_outage, wait_until_serving
from tests.redis_servers import PrivateRedis, need_programs, running
from tests.tls import make_certificates

pytestmark = pytest.mark.timeout(180)


@pytest.mark.slow
def test_worker_survives_a_redis_restart_and_loses_nothing(
    private_redis: PrivateRedis, e2e_dir: Path
) -> None:
    url = private_redis.url + "?lease_ttl=3"
    client = Forkq("e2e", broker=url)
    worker = WorkerProcess(e2e_dir, url, "-c", "2", "-l", "info")
    try:
        survive_outage(client, worker, private_redis.stop, private_redis.start)
    finally:
        worker.stop()
        client.close()


@pytest.mark.slow
def test_kill_9_of_children_and_of_a_whole_worker_under_load(
    private_redis: PrivateRedis, e2e_dir: Path
) -> None:
    """2,000 tasks; busy children killed with SIGKILL three times, then the first worker's
    master; a second worker takes over after the lease. Every task completes; duplicates (a
    task run again because its process died mid-run) are counted and reported."""
    url = private_redis.url + "?lease_ttl=2"
    counter_url = private_redis.url.replace("/0", "/1")
    client = Forkq("e2e", broker=url)
    first = WorkerProcess(e2e_dir, url, "-c", "2", "-l", "warning")
    second: WorkerProcess | None = None
    try:
        wait_until_serving(client, first)
        queue = client.settings.default_queue
        total = 2000
        results = client.publish_many(
            [
                make_message("e2eapp.counted", [counter_url, 0.001], {}, queue=queue)
                for _ in range(total)
            ]
        )
        for step in (200, 400, 600):
            results[step].get(timeout=60)
            os.kill(first.children()[0], signal.SIGKILL)
        results[800].get(timeout=60)
        os.kill(first.pid, signal.SIGKILL)  # the whole worker: children die with it
        first.wait(timeout=10)
        second = WorkerProcess(e2e_dir, url, "-c", "2", "-l", "warning")
        assert {r.get(timeout=120) for r in results} == {r.id for r in results}
        runs = redis.Redis.from_url(counter_url).hgetall("runs")
        assert len(runs) == total
        duplicates = sum(int(n) - 1 for n in runs.values())
        print(f"\n{total} tasks, 3 children and 1 worker killed: {duplicates} ran twice")
        # Only a task that had started can run twice (prefetched ones had not): at most one
        # per killed child, and one per child of the killed worker.
        assert duplicates <= 3 + 2
    finally:
        first.stop()
        if second is not None:
            second.stop()
        client.close()


@pytest.mark.slow
def test_kill_9_of_children_runs_again_only_what_was_running(
    private_redis: PrivateRedis, e2e_dir: Path
) -> None:
    """Tasks without results have their acks kept back to ride with the next fetch; a child
    killed with SIGKILL leaves them unsent. Its master acks them from the scoreboard, so only
    the task that was running runs again."""
    url = private_redis.url
    counter_url = private_redis.url.replace("/0", "/1")
    counter = redis.Redis.from_url(counter_url)
    client = Forkq("e2e", broker=url)
    # A batch of 32: up to 31 finished tasks' acks kept back when a child is killed.
    worker = WorkerProcess(e2e_dir, url, "-c", "2", "--prefetch", "32", "-l", "warning")
    try:
        wait_until_serving(client, worker)
        queue, total = client.settings.default_queue, 1000
        message = make_message("e2eapp.counted_quietly", [counter_url, 0.0], {}, queue=queue)
        client.publish_many([msgspec.structs.replace(message, id=f"t{n}") for n in range(total)])
        seen: set[str] = set()
        kills = {150, 300, 450}
        while len(seen) < total:
            popped = counter.blpop(["runs:done"], timeout=60)
            assert popped is not None, f"{len(seen)} of {total} tasks done within 60 s"
            seen.add(popped[1].decode())
            if len(seen) in kills:
                kills.discard(len(seen))
                os.kill(worker.children()[0], signal.SIGKILL)
        runs = counter.hgetall("runs")
        duplicates = sum(int(n) - 1 for n in runs.values())
        print(f"\n{total} tasks without results, 3 busy children killed: {duplicates} ran twice")
        print(worker.log())
        assert len(runs) == total and duplicates <= 3  # at most the one running per kill
    finally:
        worker.stop()
        client.close()


def test_hostile_entries_pushed_straight_into_the_streams(
    private_redis: PrivateRedis, e2e_dir: Path
) -> None:
    url = private_redis.url
    client = Forkq("e2e", broker=url)
    raw = redis.Redis.from_url(url)
    client.broker.size("default")  # the queue's streams and group exist
    stream = "{forkq:default}:b0"
    hostile: list[dict[str, Any]] = [
        {"x": "no body at all"},
        {"b": b"\xff\xfe\x00 not json", "d": "many"},
        {"b": b'{"id": "h-1", "task": 7}', "d": "-3", "p": "urgent"},
        {"b": b"[]", "d": "1e99"},
    ]
    for fields in hostile:
        raw.xadd(stream, fields)
    valid = [client.send_task("e2eapp.add", (i, 1)) for i in range(20)]
    worker = WorkerProcess(e2e_dir, url, "-c", "1", "-l", "warning")
    try:
        assert [r.get(timeout=60) for r in valid] == [i + 1 for i in range(20)]
        letters = client.broker.dead_letters("default")
        assert len(letters) == len(hostile)
        reasons = sorted(letter.reason for letter in letters)
        assert reasons[-1] == 'malformed stream entry: no body (field b); its fields: "x"'
        assert all(reason.startswith("malformed message") for reason in reasons[:-1])
        assert client.AsyncResult("h-1").state == "FAILURE"
        assert "exit code" not in worker.log() and "killed by" not in worker.log()
    finally:
        worker.stop()
        client.close()


def _calls(server: redis.Redis, prefix: str) -> int:
    """Calls the server served of commands whose stats name starts with `prefix` (Redis 7
    names subcommands as `cmdstat_script|load`)."""
    stats: dict[str, Any] = server.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k.startswith(prefix))


def test_result_and_ack_go_in_one_round_trip(private_redis: PrivateRedis) -> None:
    broker, backend = open_broker(private_redis.url), open_backend(private_redis.url)
    holder = broker.consumer(Consumer("w", "w/0"), backend)
    assert holder.joins_results
    broker.publish([outgoing("q", b"1"), outgoing("q", b"2")])
    first, second = holder.fetch(["q"], 2, 0)
    server = redis.Redis.from_url(private_redis.url)
    server.script_flush()  # as a restarted server: a finish needs no script
    before = {name: _calls(server, f"cmdstat_{name}") for name in ("evalsha", "xack", "xdel")}
    scripts = _calls(server, "cmdstat_script|load") + _calls(server, "cmdstat_script|exists")
    holder.finish(first, ResultWrite("t-1", "SUCCESS", b"r", 60))
    holder.finish(second, ResultWrite("t-2", "SUCCESS", b"r", 60))
    assert backend.get("t-1") is not None and backend.get("t-2") is not None
    assert broker.size("q") == 0
    # Plain commands, one XACK and one XDEL each, in the result's write: no script is run,
    # loaded or looked for.
    assert _calls(server, "cmdstat_evalsha") == before["evalsha"]
    assert _calls(server, "cmdstat_script|load") + _calls(server, "cmdstat_script|exists") == (
        scripts
    )
    assert _calls(server, "cmdstat_xack") == before["xack"] + 2
    assert _calls(server, "cmdstat_xdel") == before["xdel"] + 2
    for closing in (server, broker, backend):
        closing.close()


def test_the_acks_of_a_batch_ride_with_the_next_fetch(private_redis: PrivateRedis) -> None:
    broker, observer = open_broker(private_redis.url), open_broker(private_redis.url)
    backend = open_backend(private_redis.url)
    holder = broker.consumer(Consumer("w", "w/0"), backend)
    server = redis.Redis.from_url(private_redis.url)

    def commands_served() -> dict[str, int]:
        """What the server ran so far, by command, less the observer's and this check's."""
        stats: Any = server.info("commandstats")
        skip = ("cmdstat_info", "cmdstat_xlen", "cmdstat_zcard", "cmdstat_hello")
        return {k: v["calls"] for k, v in stats.items() if k not in skip}

    broker.publish([outgoing("q", b"0")])  # a first round loads the scripts into this server
    [warm] = holder.fetch(["q"], 1, 0)
    holder.finish(warm, None)
    holder.flush()
    broker.publish([outgoing("q", b"1"), outgoing("q", b"2")])
    first, second = holder.fetch(["q"], 2, 0)
    before = commands_served()
    holder.finish(first, None)
    holder.finish(second, None)
    assert commands_served() == before and observer.size("q") == 2  # both acks kept back
    assert holder.kept_acks() == [("q", first.receipt), ("q", second.receipt)]
    assert holder.fetch(["q"], 1, 0) == []
    after = commands_served()
    sent = {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
    # One call of the fetch script, which acked both in one XACK and one XDEL and read
    # nothing (commandstats counts what scripts run too).
    assert sent.pop("cmdstat_evalsha") == sent.pop("cmdstat_xack") == sent.pop("cmdstat_xdel") == 1
    assert set(sent) <= {"cmdstat_xreadgroup", "cmdstat_zrange"}  # the script's own reads
    assert observer.size("q") == 0
    assert holder.kept_acks() == []

    broker.publish([outgoing("q", b"3")])
    [third] = holder.fetch(["q"], 1, 0)
    holder.finish(third, None)
    assert observer.size("q") == 1
    assert holder.release() == 0  # the kept ack goes first: nothing runs twice
    assert observer.size("q") == 0
    for engine in (broker, observer, backend):
        engine.close()


def test_kept_acks_outlive_a_fetch_that_failed(private_redis: PrivateRedis) -> None:
    """Redis gone when the fetch that carries the kept acks is sent: they wait for the next one
    (and stay in the child's scoreboard slot meanwhile), rather than leaving two finished
    tasks pending to run again."""
    broker, backend = open_broker(private_redis.url), open_backend(private_redis.url)
    holder = broker.consumer(Consumer("w", "w/0"), backend)
    broker.publish([outgoing("q", b"1"), outgoing("q", b"2")])
    for delivery in holder.fetch(["q"], 2, 0):
        holder.finish(delivery, None)
    kept = holder.kept_acks()
    assert len(kept) == 2
    private_redis.stop()
    with pytest.raises(BrokerError):
        holder.fetch(["q"], 1, 0)
    assert holder.kept_acks() == kept
    private_redis.start()
    assert holder.fetch(["q"], 1, 0) == []
    assert holder.kept_acks() == []
    observer = open_broker(private_redis.url)
    assert observer.size("q") == 0  # both acked once Redis was back
    for engine in (broker, backend, observer):
        engine.close()


def test_a_dead_consumers_finished_tasks_are_acked_not_released(
    private_redis: PrivateRedis,
) -> None:
    """What a child finished but had not acked when it died (read by its master from the
    scoreboard) does not run again; what it had not finished does."""
    child, master = open_broker(private_redis.url), open_broker(private_redis.url)
    backend = open_backend(private_redis.url)
    holder = Consumer("w", "w/0")
    master.publish([outgoing("q", b"%d" % n) for n in range(4)])
    session = child.consumer(holder, backend)
    batch = session.fetch(["q"], 4, 0)
    for delivery in batch[:2]:
        session.finish(delivery, None)
    kept = session.kept_acks()
    child.abandon()  # the child dies: its kept acks are never sent
    leftovers = Leftovers(running=(batch[2].receipt,), finished=tuple(kept))
    released = master.release(holder, leftovers)
    assert released == 2 and master.size("q") == 2
    again = master.consumer(Consumer("w", "w/1"), backend).fetch(["q"], 4, 0)
    assert sorted(d.body for d in again) == [b"2", b"3"]
    assert [d.delivery_count for d in again if d.body == b"2"] == [2]  # it had started
    for engine in (child, master, backend):
        engine.close()


def test_a_worker_serves_over_tls(private_tls_redis: PrivateRedis, e2e_dir: Path) -> None:
    url = private_tls_redis.url
    plain = redis.Redis(port=private_tls_redis.port, socket_connect_timeout=1)
    with pytest.raises(redis.ConnectionError):
        plain.ping()  # the server speaks nothing but TLS: the test cannot pass in clear
    client = Forkq("e2e", broker=url)
    worker = WorkerProcess(e2e_dir, url, "-c", "2")
    try:
        wait_until_serving(client, worker)
        results = [client.send_task("e2eapp.add", args=[i, i]) for i in range(20)]
        assert [r.get(timeout=30) for r in results] == [2 * i for i in range(20)]
    finally:
        worker.stop()
        client.close()


def test_a_private_server_that_never_answers_is_stopped_by_its_fixture(tmp_path: Path) -> None:
    """A start that gives up leaves no redis-server behind. Here the client trusts another CA,
    as Python 3.13 refused a test CA without the extensions strict X.509 wants."""
    need_programs("redis-server", "openssl")
    server = PrivateRedis(tmp_path, tls=True)
    assert server.tls is not None
    (tmp_path / "other").mkdir()
    server.tls["ca"] = make_certificates(tmp_path / "other")["ca"]
    with pytest.raises(RuntimeError, match="certificate verify failed"), running(server, 1.0):
        pytest.fail("the server answered a client that trusts another CA")
    assert server.proc is not None
    assert server.proc.poll() is not None, f"redis-server {server.proc.pid} left running"
    with pytest.raises(ProcessLookupError):  # reaped: the pid names no process of ours
        os.kill(server.proc.pid, 0)
