"""End to end: a real worker with -E keeps its task and worker events in the result backend,
where a new backend object reads them (SQLite and Redis); an events store nobody answers on
stops no task, and its drops are counted in /metrics."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forkq import Forkq, TaskFailed, TaskRevoked
from forkq.engines.contract import READ_MAX
from forkq.engines.registry import open_backend
from forkq.events import TaskEvent, TaskEventKind, WorkerEvent, WorkerEventKind, decode
from tests.conftest import engine_url, redis_test_url, wait_until_serving
from tests.e2e.test_metrics_e2e import METRICS_APP, scrape_until, served

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def e2e_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "e2eapp.py").write_text(METRICS_APP)
    # The revoke tells no worker but those of this test (it starts none before it).
    monkeypatch.setenv("FORKQ_CONTROL_DIR", str(tmp_path / "control"))
    return tmp_path


@pytest.fixture(params=["sqlite", "redis"])
def broker_url(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[str]:
    urls = {"sqlite": lambda: sqlite_url, "redis": redis_test_url}
    yield from engine_url(request.param, urls[request.param]())


def stored_events(url: str) -> list[TaskEvent | WorkerEvent]:
    backend = open_backend(url)  # a new object: what was kept, not what a process held
    try:
        page = backend.read_events(None, READ_MAX)
    finally:
        backend.close()
    events = [decode(e.body) for e in page.events]
    assert None not in events
    return [e for e in events if e is not None]


def test_a_worker_with_events_keeps_what_happened(
    client: Forkq, start_worker: Any, broker_url: str
) -> None:
    revoked = client.send_task("e2eapp.add", (0, 0))
    client.revoke(revoked.id)  # no worker yet: stored, discarded when the worker takes it
    worker = start_worker("-E", "-c", "2", "-n", "events-host")
    wait_until_serving(client, worker)
    ok = client.send_task("e2eapp.add", (2, 3))
    boom = client.send_task("e2eapp.boom")
    flaky = client.send_task("e2eapp.flaky")
    assert ok.get(timeout=60) == 5 and flaky.get(timeout=60) == "second try"
    with pytest.raises(TaskFailed):
        boom.get(timeout=60)
    with pytest.raises(TaskRevoked):
        revoked.get(timeout=60)
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    events = stored_events(broker_url)

    workers = [e for e in events if isinstance(e, WorkerEvent)]
    kinds = [e.kind for e in workers]
    assert kinds[0] is WorkerEventKind.ONLINE and kinds[-1] is WorkerEventKind.OFFLINE
    assert WorkerEventKind.HEARTBEAT in kinds
    worker_id = workers[0].worker
    assert {(e.worker, e.host, e.pid) for e in workers} == {(worker_id, "events-host", worker.pid)}
    beat = next(e for e in workers if e.kind is WorkerEventKind.HEARTBEAT)
    assert beat.concurrency == 2 and beat.master_uss > 0
    assert sorted(r.index for r in beat.children) == [0, 1]
    assert all(r.rss > 0 and r.uss > 0 and r.pid > 0 for r in beat.children)

    tasks = [e for e in events if isinstance(e, TaskEvent)]
    assert {(e.worker, e.queue) for e in tasks} == {(worker_id, "default")}
    assert all(e.child in (0, 1) for e in tasks)

    def of(task_id: str) -> list[tuple[TaskEventKind, str]]:
        # In the order they happened: children flush in batches of their own, so one task's
        # events from two children (a retry's tries) may be stored in either order.
        mine = sorted((e for e in tasks if e.task_id == task_id), key=lambda e: e.at)
        return [(e.kind, e.name) for e in mine]

    r, s, ok_, f, rt, rv = (
        TaskEventKind.RECEIVED,
        TaskEventKind.STARTED,
        TaskEventKind.SUCCEEDED,
        TaskEventKind.FAILED,
        TaskEventKind.RETRIED,
        TaskEventKind.REVOKED,
    )
    assert of(ok.id) == [(r, "e2eapp.add"), (s, "e2eapp.add"), (ok_, "e2eapp.add")]
    assert [k for k, _ in of(boom.id)] == [r, s, f]
    assert [k for k, _ in of(flaky.id)] == [r, s, rt, r, s, ok_]
    assert of(revoked.id) == [(r, "e2eapp.add"), (rv, "e2eapp.add")]
    failed = next(e for e in tasks if e.task_id == boom.id and e.kind is f)
    assert failed.reason.endswith("ValueError: boom")
    for e in tasks:
        if e.kind in (ok_, f, rt):
            assert e.runtime is not None and 0 <= e.runtime < 30
        else:
            assert e.runtime is None


def test_an_events_store_nobody_answers_stops_no_task(client: Forkq, start_worker: Any) -> None:
    # A port nothing listens on: every flush fails at once, is dropped and counted.
    env = {"FORKQ_EVENTS_URL": "redis://127.0.0.1:1/0"}
    worker, port = served(lambda *a: start_worker(*a, env=env), client, "-E", "-c", "2")
    results = [client.send_task("e2eapp.add", (n, n)) for n in range(20)]
    assert [r.get(timeout=60) for r in results] == [2 * n for n in range(20)]
    samples = scrape_until(port, lambda s: s[("forkq_events_dropped_total", ())] > 0)
    assert samples[("forkq_events_dropped_total", ())] > 0
    worker.wait_for_log("events store unreachable")
    assert worker.log().count("events store unreachable") <= 3  # once per outage, per process
