"""Workflows in eager mode: run in the caller, with a worker's semantics (forkq/eager.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forkq import (
    FAILURE,
    SUCCESS,
    Forkq,
    GroupResult,
    ResultTimeout,
    Task,
    TaskFailed,
    chain,
    chord,
    group,
)


class Tasks:
    def __init__(self, app: Forkq) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

        @app.task
        def add(x: int, y: int) -> int:
            return x + y

        @app.task
        def tsum(values: list[int]) -> int:
            return sum(values)

        @app.task
        def boom(*args: Any) -> None:
            raise KeyError("boom")

        @app.task
        def note(*args: Any) -> list[Any]:
            self.calls.append(("note", args))
            return list(args)

        @app.task(ignore_result=True)
        def quiet(x: int) -> int:
            return x * 10

        self.add, self.tsum, self.boom, self.note, self.quiet = add, tsum, boom, note, quiet


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Forkq]:
    monkeypatch.chdir(tmp_path)
    eager = Forkq("proj", eager=True)
    yield eager
    eager.close()


@pytest.fixture
def t(app: Forkq) -> Tasks:
    return Tasks(app)


def test_a_chain_passes_each_result_on(t: Tasks) -> None:
    result = (t.add.s(1, 2) | t.add.s(10) | t.add.si(100, 0)).delay()
    assert result.get(timeout=0) == 100
    assert result.parent is not None and result.parent.parent is not None
    assert (result.parent.get(timeout=0), result.parent.parent.get(timeout=0)) == (13, 3)  # type: ignore[attr-defined]


def test_a_group_and_its_result(t: Tasks) -> None:
    result = group(t.add.s(i, i) for i in range(4)).delay()
    assert isinstance(result, GroupResult)
    assert result.get(timeout=0) == [0, 2, 4, 6] and result.join(timeout=0) == [0, 2, 4, 6]
    assert (result.ready(), result.successful(), result.failed()) == (True, True, False)
    assert (result.completed_count(), result.waiting(), len(result)) == (4, False, 4)
    assert [r.get(timeout=0) for r in result] == [0, 2, 4, 6]


def test_a_chord_gives_its_body_the_headers_results_in_order(t: Tasks) -> None:
    result = chord((t.add.s(i, i) for i in range(5)), t.tsum.s()).delay()
    assert result.get(timeout=0) == 20
    assert isinstance(result.parent, GroupResult) and result.parent.get() == [0, 2, 4, 6, 8]
    assert chord([])(t.note.s()).get(timeout=0) == [[]]  # no members: given []


def test_a_chord_member_that_ignores_its_result_still_stores_it_for_the_body(t: Tasks) -> None:
    assert chord([t.quiet.s(1), t.quiet.s(2)], t.tsum.s()).delay().get(timeout=0) == 30
    with pytest.raises(ResultTimeout):
        t.quiet.delay(1).get(timeout=0)  # outside a chord: not stored


def test_nested_workflows(t: Tasks) -> None:
    in_chain = chain(t.add.s(1, 1), group(t.add.s(1), t.add.s(2)), t.tsum.s()).delay()
    assert in_chain.get(timeout=0) == 7
    body_chain = chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s() | t.add.s(1000)).delay()
    assert body_chain.get(timeout=0) == 1006
    chain_in_group = group(t.add.s(1, 1) | t.add.s(1), t.add.s(5, 5)).delay()
    assert chain_in_group.get(timeout=0) == [3, 10]
    inner = chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s())
    header_chord = chord([inner, group(t.add.s(5, 5), t.add.s(6, 6))], t.note.s()).delay()
    assert header_chord.get(timeout=0) == [[6, [10, 12]]]
    assert group(group(t.add.s(1, 1), t.add.s(2, 2)), t.add.s(3, 3)).delay().get() == [[2, 4], 6]
    chord_then_more = (chord([t.add.s(1, 1)], t.tsum.s()) | t.add.s(1)).delay()
    assert chord_then_more.get(timeout=0) == 3


def test_a_failed_step_fails_the_rest_of_its_chain_at_once_with_its_error(t: Tasks) -> None:
    result = chain(t.add.s(1, 1), t.boom.s(), t.add.s(1), t.add.s(2)).delay()
    with pytest.raises(KeyError) as failed:
        result.get(timeout=0)
    assert isinstance(failed.value, TaskFailed) and failed.value.exc_type == "KeyError"
    assert "not run: task" in failed.value.remote_traceback
    assert result.parent is not None and result.parent.state == FAILURE  # type: ignore[attr-defined]
    assert t.calls == []


def test_link_error_gets_the_failed_tasks_id_once(t: Tasks) -> None:
    workflow = chain(t.add.s(1, 1), t.boom.s(), t.add.s(1), group(t.add.s(1), t.add.s(2)))
    workflow.link_error(t.note.s())  # on the last step: each member of the group
    result = workflow.delay()
    boom_id = result.parent.parent.id  # type: ignore[union-attr]
    assert t.calls == [("note", (boom_id,))]
    t.boom.apply_async(link_error=[t.note.s("after"), t.note.si("fixed")])
    assert [args[1:] if args[0] != "fixed" else args for _, args in t.calls[1:]] == [
        ("after",),
        ("fixed",),
    ]


def test_link_is_sent_the_result(t: Tasks) -> None:
    result = t.add.apply_async((1, 2), link=t.note.s("then"))
    assert result.get(timeout=0) == 3 and t.calls == [("note", (3, "then"))]


def test_a_failing_member_fails_the_chord_with_its_error_and_runs_link_error(t: Tasks) -> None:
    workflow = chord([t.add.s(1, 1), t.boom.s(1), t.add.s(3, 3)], t.tsum.s() | t.add.s(1))
    workflow.link_error(t.note.s())
    result = workflow.delay()
    with pytest.raises(KeyError, match="boom"):
        result.get(timeout=0)
    with pytest.raises(KeyError):
        result.parent.get(timeout=0)  # type: ignore[union-attr]  # the body, tsum
    header = result.parent.parent  # type: ignore[union-attr]
    assert isinstance(header, GroupResult) and header.failed() and header.completed_count() == 2
    assert t.calls == [("note", (header.results[1].id,))]


def test_a_failing_inner_chord_fails_the_outer_one(t: Tasks) -> None:
    inner = chord([t.boom.s(), t.add.s(1, 1)], t.tsum.s())
    outer = chord([inner, t.add.s(2, 2)], t.note.s())
    outer.link_error(t.note.s("outer failed"))
    result = outer.delay()
    with pytest.raises(KeyError):
        result.get(timeout=0)
    assert [args[1:] for _, args in t.calls] == [("outer failed",)]


def test_a_retry_in_a_chain_is_not_a_failure(app: Forkq, t: Tasks) -> None:
    tries: list[int] = []

    @app.task(bind=True, max_retries=2)
    def flaky(self: Task, x: int) -> int:
        tries.append(self.request.retries)
        if self.request.retries < 2:
            raise self.retry(countdown=0)
        return x * 2

    assert (t.add.s(1, 1) | flaky.s() | t.add.s(1)).delay().get(timeout=0) == 5
    assert tries == [0, 1, 2]


def test_starmap_chunks_and_gather(app: Forkq, t: Tasks) -> None:
    assert t.add.starmap([(1, 2), (3, 4)]).delay().get(timeout=0) == [3, 7]
    chunks = t.add.chunks([(i, i) for i in range(5)], 2).delay()
    assert chunks.get(timeout=0) == [[0, 2], [4, 6], [8]]
    handles = [t.add.delay(1, 1), group(t.add.s(2, 2), t.boom.s()).delay()]
    with pytest.raises(KeyError):
        app.gather(handles)
    values = app.gather(handles, propagate=False)
    assert values[0] == 2 and values[1][0] == 4 and isinstance(values[1][1], TaskFailed)


def test_a_long_chain_runs_without_recursion(t: Tasks) -> None:
    workflow = chain(t.add.s(0, 0), *(t.add.s(1) for _ in range(400)))
    result = workflow.delay()
    assert result.get(timeout=0) == 400 and result.state == SUCCESS
