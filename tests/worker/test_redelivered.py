"""A redelivery whose task ran to its end before (its ack lost: a server restarted without
the acks it had taken, a lease taken over after the store) is acked and not run again; the
same id sent again, a workflow's step and a retry's RETRY record are run (forkq/worker/
redelivered.py). On every result backend, as tests/engines/test_conformance.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from forkq.engines.contract import Delivery
from forkq.states import FAILURE, RETRY, SUCCESS
from forkq.task import Task
from forkq.worker.observe import Observers
from forkq.worker.redelivered import DONE_BEFORE
from tests.conftest import engine_url
from tests.engines.test_conformance import BACKENDS
from tests.worker.harness import Harness, task


@pytest.fixture(params=sorted(BACKENDS))
def e(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    for url in engine_url(request.param, BACKENDS[request.param](tmp_path)):
        harness = Harness(url)
        yield harness
        harness.scoreboard.close()


def back_again(h: Harness, body: bytes, returned: bool) -> Delivery:
    """The same message brought back by the broker, its ack lost: counted as delivered
    before (`delivery_count` 2), or returned by a connection that dropped (RabbitMQ)."""
    h.publish(body)
    return msgspec.structs.replace(h.fetch(), delivery_count=2, returned=returned)


class Finished:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def received(self, message: Any, queue: str) -> None: ...
    def started(self, message: Any, queue: str) -> None: ...
    def rejected(self, rejection: Any) -> None: ...

    def finished(self, message: Any, queue: str, state: str, *rest: Any) -> None:
        self.seen.append((state, rest[1]))


@pytest.mark.parametrize("returned", [False, True], ids=["counted", "returned"])
@pytest.mark.parametrize("fails", [False, True], ids=["success", "failure"])
def test_a_redelivery_whose_run_stored_its_outcome_is_acked_not_run(
    e: Harness, returned: bool, fails: bool, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[int] = []

    def once(n: int) -> int:
        ran.append(n)
        if fails:
            raise ValueError(n)
        return n

    result = task(e, once).delay(7)
    first = e.fetch()
    e.executor.handle(first)
    stored = e.app.backend.get(result.id)
    e.executor.observers = Observers([observer := Finished()])
    caplog.set_level("INFO", "forkq.worker")
    assert e.executor.handle(back_again(e, first.body, returned))
    assert ran == [7]
    assert e.app.backend.get(result.id) == stored  # left as it is
    assert observer.seen == [(FAILURE if fails else SUCCESS, DONE_BEFORE)]
    assert f"task once[{result.id}] {DONE_BEFORE}" in caplog.messages
    assert e.session.fetch([e.queue], 1, 0) == [] and e.dead_reasons() == []


def test_the_same_id_sent_again_runs(e: Harness) -> None:
    ran: list[int] = []
    add = task(e, lambda n: ran.append(n) or n, name="add")
    result = add.delay(1)
    e.run_next()
    again = add.apply_async((2,), task_id=result.id)  # a new sending of the same id
    assert again.id == result.id
    # Its first delivery died before it stored anything: the record is the first sending's.
    e.executor.handle(msgspec.structs.replace(e.fetch(), delivery_count=2))
    assert ran == [1, 2] and result.get(timeout=1) == 2


def test_a_workflow_step_runs_again(e: Harness) -> None:
    """Its effects (here the next step) are done after its record is stored: a crash in
    between leaves them undone, and running it again is what does them."""
    ran: list[int] = []
    add = task(e, lambda a, b: ran.append(a) or a + b, name="add")
    (add.s(1, 2) | add.s(10)).delay()
    first = e.fetch()
    e.executor.handle(first)
    e.run_next()  # the next step, which it sent
    e.executor.handle(back_again(e, first.body, returned=False))
    assert ran == [1, 3, 1]


def test_a_retry_record_runs_again(e: Harness) -> None:
    seen: list[int] = []

    def flaky(self: Task) -> None:
        seen.append(self.request.retries)
        raise self.retry(exc=OSError("down"), countdown=0, max_retries=3)

    result = task(e, flaky, bind=True).delay()
    first = e.fetch()
    e.executor.handle(first)
    assert e.record(result.id).state == RETRY
    [next_try] = e.session.fetch([e.queue], 1, 0)  # held, not run: the record stays RETRY
    e.executor.handle(back_again(e, first.body, returned=True))
    assert seen == [0, 0]
    assert next_try.body != first.body


def test_a_unique_tasks_lock_is_let_go_as_after_a_run(e: Harness) -> None:
    report = task(e, lambda day: day, name="report")
    result = report.apply_async(("mon",), unique_key="weekly", unique_for=60)
    first = e.fetch()
    e.executor.handle(first)
    unique = e.app.codec.decode(first.body).unique
    assert unique is not None
    # The worker died after the store, before its ack and the unlock after it.
    assert e.app.backend.lock(unique.key, result.id, 60) is None
    assert report.apply_async(("tue",), unique_key="weekly").id == result.id  # still locked
    e.executor.handle(back_again(e, first.body, returned=True))
    assert report.apply_async(("wed",), unique_key="weekly").id != result.id
