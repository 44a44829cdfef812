"""Revoking from a client (forkq/revocation.py), on the memory engine, with no worker running:
what is stored, for how long, and what is refused before anything is."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from forkq import Forkq, GroupResult, chain, group
from forkq.engines.contract import MAX_DELAY
from forkq.exceptions import ConfigurationError
from forkq.revocation import current_revocations, revocation_ttl


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Forkq]:
    monkeypatch.setenv("FORKQ_CONTROL_DIR", str(tmp_path / "control"))  # no worker here
    made = Forkq("t", broker=f"memory://{uuid.uuid4().hex}", result_ttl=60)
    yield made
    made.close()


def test_ids_are_stored_once_each_for_the_longest_delay_plus_the_result_ttl(app: Forkq) -> None:
    told = app.revoke(["a", "b", "a"])
    assert (told.replies, told.silent, told.terminated) == ((), (), [])
    found = current_revocations(app)
    assert [r.task_id for r in found] == ["a", "b"]
    assert revocation_ttl(app.settings) == MAX_DELAY + 60
    assert all(r.expires_at >= time.time() + MAX_DELAY for r in found)


def test_one_id_as_a_string_and_a_ttl_of_the_callers(app: Forkq) -> None:
    app.revoke("only", ttl=30)
    [found] = current_revocations(app)
    assert found.task_id == "only" and found.expires_at <= time.time() + 30


def test_an_async_result_and_a_group_result_revoke_their_ids(app: Forkq) -> None:
    app.AsyncResult("one").revoke()
    GroupResult("g", [app.AsyncResult("m1"), app.AsyncResult("m2")], app).revoke()
    assert [r.task_id for r in current_revocations(app)] == ["one", "m1", "m2"]


def test_a_group_of_chains_revokes_every_step_of_each_member(app: Forkq) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    sent = group(
        chain(add.s(1, 1), add.s(2), add.s(3)),
        add.s(4, 4),
        chain(group(add.s(5, 5), add.s(6, 6)), add.si(7, 7)),  # a chord as a member
    ).apply_async()
    first, single, chord_body = sent.results
    header = chord_body.parent
    assert isinstance(header, GroupResult)
    steps = [first.id, first.parent.id, first.parent.parent.id]  # type: ignore[union-attr]
    sent.revoke()
    revoked = {r.task_id for r in current_revocations(app)}
    assert revoked == {*steps, single.id, chord_body.id, *(m.id for m in header.results)}


@pytest.mark.parametrize(
    ("ids", "options", "error"),
    [
        ([], {}, "revoke needs at least one task id"),
        (["a", ""], {}, "a task id to revoke is a string of 1 to 255 characters"),
        (["a"], {"ttl": 0}, "ttl must be a number of seconds > 0"),
        (["a"], {"signal": "SIGINT"}, "SIGINT would not end the child"),
        (["a"], {"signal": "SIGBOGUS"}, "unknown signal"),
    ],
)
def test_bad_input_is_refused_before_anything_is_stored(
    app: Forkq, ids: list[str], options: dict[str, object], error: str
) -> None:
    with pytest.raises(ConfigurationError, match=error):
        app.revoke(ids, **options)  # type: ignore[arg-type]
    assert current_revocations(app) == ()
