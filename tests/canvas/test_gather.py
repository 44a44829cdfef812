"""Gathering results: GroupResult and app.gather read many results in one round trip per
batch and wait without polling (forkq/canvas/results.py), on the memory engines."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from forkq import GroupResult, ResultTimeout, TaskFailed, group
from forkq.engines.contract import StoredResult
from tests.worker.harness import Harness, task


def counted_reads(h: Harness, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each `get_many` the app's backend is asked (it still answers)."""
    reads: list[int] = []
    real = h.app.backend.get_many

    def get_many(ids: Any) -> list[StoredResult | None]:
        reads.append(len(ids))
        return real(ids)

    monkeypatch.setattr(h.app.backend, "get_many", get_many)
    return reads


def test_a_group_result_reads_all_its_members_at_once(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    add = task(h, lambda x, y: x + y, name="add")
    result = group(add.s(i, i) for i in range(50)).delay()
    assert isinstance(result, GroupResult)
    reads = counted_reads(h, monkeypatch)
    assert (result.ready(), result.waiting(), result.completed_count()) == (False, True, 0)
    h.drain()
    assert (result.ready(), result.successful(), result.failed()) == (True, True, False)
    assert result.get(timeout=1) == [2 * i for i in range(50)]
    assert reads == [50] * 7  # one read per call, whatever the number of members


def test_gather_waits_on_the_last_not_ready_and_reads_the_rest_in_one_go(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    add = task(h, lambda x, y: x + y, name="add")
    results = [add.delay(i, 0) for i in range(20)]
    reads = counted_reads(h, monkeypatch)
    waited: list[str] = []
    real_wait = h.app.backend.wait
    monkeypatch.setattr(
        h.app.backend, "wait", lambda task_id, t: waited.append(task_id) or real_wait(task_id, t)
    )
    worker = threading.Timer(0.1, h.drain)  # the queue drained, in order, meanwhile
    worker.start()
    try:
        assert h.app.gather(results, timeout=10) == list(range(20))
    finally:
        worker.join()
    assert waited == [results[-1].id] and reads == [20, 20]


def test_gather_times_out_naming_what_is_not_ready(h: Harness) -> None:
    add = task(h, lambda x, y: x + y, name="add")
    results = [add.delay(1, 1), add.delay(2, 2)]
    h.run_next()
    started = time.monotonic()
    with pytest.raises(ResultTimeout, match=f"task {results[1].id} not ready.*1 of 2 results"):
        h.app.gather(results, timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 2


def test_gather_raises_a_failure_once_read_or_returns_it(h: Harness) -> None:
    add = task(h, lambda x, y: x + y, name="add")
    boom = task(h, lambda: {}["k"], name="boom")
    results = [add.delay(1, 1), boom.delay(), add.delay(2, 2)]
    h.run_next()
    h.run_next()
    with pytest.raises(KeyError):  # before the third is ready
        h.app.gather(results, timeout=5)
    h.run_next()
    values = h.app.gather(results, propagate=False)
    assert values[0] == 2 and isinstance(values[1], TaskFailed) and values[2] == 4
    grouped = group(add.s(1, 1), boom.s()).delay()
    h.drain()
    assert grouped.failed() and grouped.completed_count() == 1
    nested = h.app.gather([results[0], grouped], propagate=False)
    assert nested[0] == 2 and nested[1][0] == 2 and isinstance(nested[1][1], TaskFailed)
