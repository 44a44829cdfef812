"""Unique tasks' options, keys and sending, with the in-process backend (the locks on every
engine: tests/engines/test_conformance.py; on a real worker: tests/e2e/test_unique_e2e.py)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from forkq import ConfigurationError, Forkq
from forkq.exceptions import BrokerError
from forkq.unique import UniqueWhile, unique_of


def app() -> Forkq:
    name = uuid.uuid4().hex
    return Forkq(name, broker=f"memory://{name}", backend=f"memory://{name}")


def test_the_key_is_the_task_and_its_arguments_in_any_keyword_order() -> None:
    a = unique_of("t", (1,), {"x": 1, "y": 2}, None, False)
    b = unique_of("t", (1,), {"y": 2, "x": 1}, None, False)
    assert a.key == b.key and a.key.startswith("t:")
    assert unique_of("t", (2,), {"x": 1, "y": 2}, None, False).key != a.key
    assert unique_of("u", (1,), {"x": 1, "y": 2}, None, False).key != a.key
    assert unique_of("t", (1,), {}, "mine", True).key == "t:mine"


def test_options_are_checked_when_the_task_is_defined() -> None:
    forkq = app()
    with pytest.raises(ConfigurationError, match="unique_while must be 'pending' or 'running'"):
        forkq.task(unique_for=5, unique_while="forever")(lambda: None)
    with pytest.raises(ConfigurationError, match="unique_for must be a number of seconds > 0"):
        forkq.task(unique_for=0)(lambda: None)
    task = forkq.task(unique_for=5, unique_while="running")(lambda: None)
    assert task.options.unique_while is UniqueWhile.RUNNING


def test_a_second_send_gives_back_the_first_until_it_lets_go() -> None:
    forkq = app()

    @forkq.task(unique_for=60)
    def add(x: int, y: int) -> int:
        return x + y

    first = add.delay(1, 2)
    assert add.delay(1, 2).id == first.id
    assert add.apply_async((1, 2), countdown=10).id == first.id
    assert forkq.broker.size(forkq.settings.default_queue) == 1
    forkq.backend.unlock(f"{add.name}:" + add_key(1, 2), first.id)
    assert add.delay(1, 2).id != first.id


def add_key(x: int, y: int) -> str:
    return unique_of("k", (x, y), {}, None, False).key.removeprefix("k:")


def test_a_key_on_the_call_makes_any_task_unique() -> None:
    forkq = app()

    @forkq.task
    def report(day: str) -> str:
        return day

    first = report.apply_async(("mon",), unique_key="weekly", unique_for=60)
    assert report.apply_async(("tue",), unique_key="weekly").id == first.id
    assert report.delay("mon").id != first.id  # without the key: a plain send


def test_a_failed_publish_lets_go_of_the_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    forkq = app()

    @forkq.task(unique_for=60)
    def add(x: int, y: int) -> int:
        return x + y

    def refuse(message: object) -> None:
        raise BrokerError("down")

    with monkeypatch.context() as patched:
        patched.setattr(forkq, "publish", refuse)
        with pytest.raises(BrokerError):
            add.delay(1, 2)
    first = add.delay(1, 2)
    assert add.delay(1, 2).id == first.id


def test_eager_mode_runs_every_send() -> None:
    forkq = Forkq(uuid.uuid4().hex, eager=True)

    @forkq.task(unique_for=60)
    def add(x: int, y: int) -> int:
        return x + y

    first, second = add.delay(1, 2), add.delay(1, 2)
    assert first.id != second.id and second.get() == 3


def test_a_unique_task_in_a_signature_or_workflow_is_refused() -> None:
    forkq = app()

    @forkq.task(unique_for=60)
    def refresh(account: int) -> int:
        return account

    @forkq.task
    def log_it(value: int) -> int:
        return value

    for workflow in (refresh.s(7), refresh.s(7) | log_it.s(), log_it.s(1) | refresh.si(7)):
        with pytest.raises(ConfigurationError, match=r"is unique .* sent on its own"):
            workflow.delay()
    assert forkq.broker.size(forkq.settings.default_queue) == 0


def test_a_worker_lets_a_running_lock_go_when_a_retry_is_refused() -> None:
    from tests.worker.harness import Harness, task

    h = Harness()

    def flaky(self: Any, x: int) -> None:
        raise self.retry(countdown=1e12)  # no engine holds that: the retry is refused

    unique = task(h, flaky, bind=True, unique_for=60, unique_while="running")
    first = unique.delay(1)
    assert unique.delay(1).id == first.id
    h.run_next()
    assert h.record(first.id).exc_type == "RetryRefused"
    assert unique.delay(1).id != first.id  # the failure let the lock go
