"""Revoked tasks in a child, in process on the memory engines (tests/worker/harness.py): the
executor discards a revoked task instead of running it, and the child's revoked ids are read
again only when the bulletin or the backstop says they may have changed."""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Iterator
from typing import Any

import pytest

from forkq import REVOKED, TaskFailed, TaskRevoked, chain, chord, group
from forkq.engines.contract import ResultBackend, Revocations
from forkq.exceptions import BackendUnavailable
from forkq.pool.bulletin import Bulletin
from forkq.result import encode_record, revoked_record
from forkq.worker.observe import Observers, Rejected
from forkq.worker.revoked import MASTER_BACKSTOP, RevokedIds
from tests.worker.harness import Harness, task


class Reads:
    """Counts the reads of the revoked ids a backend answers."""

    def __init__(self, backend: ResultBackend, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.read: list[tuple[int, int]] = []  # each read's cursor, and how many it found
        read = backend.revocations

        def counted(since: int = 0) -> Revocations:
            self.count += 1
            found = read(since)
            self.read.append((since, len(found.revoked)))
            return found

        monkeypatch.setattr(backend, "revocations", counted)


class Seen:
    """An observer: what the executor reported."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[str, str, float]] = []

    def received(self, message: Any, queue: str) -> None:
        pass

    def started(self, message: Any, queue: str) -> None:
        pass

    def finished(
        self, message: Any, queue: str, state: str, runtime: float, reason: str, at: float
    ) -> None:
        self.outcomes.append((message.id, state, runtime))

    def rejected(self, rejection: Rejected) -> None:
        pass


@pytest.fixture
def bulletin() -> Iterator[Bulletin]:
    posted = Bulletin()
    yield posted
    posted.close()


@pytest.fixture
def h(bulletin: Bulletin) -> Iterator[Harness]:
    """The harness's executor with the revoked ids a worker's child has: the bulletin's."""
    harness = Harness()
    harness.executor.revoked = RevokedIds(harness.session.results, bulletin.reader())
    yield harness
    harness.scoreboard.close()


def revoke(h: Harness, bulletin: Bulletin, *task_ids: str, ttl: float = 60) -> None:
    """What `Forkq.revoke` does, without telling this host's workers: store, then post."""
    h.app.backend.revoke(list(task_ids), ttl)
    bulletin.post_revoke()


def test_a_revoked_task_is_not_run_its_result_is_revoked_and_its_message_acked(
    h: Harness, bulletin: Bulletin
) -> None:
    ran: list[int] = []
    seen = Seen()
    h.executor.observers = Observers([seen])
    result = task(h, lambda x: ran.append(x), name="note").delay(1)
    revoke(h, bulletin, result.id)
    h.run_next()
    assert ran == []
    assert result.state == REVOKED and result.ready() and not result.failed()
    with pytest.raises(TaskRevoked, match=f"task {result.id} was revoked: not run") as caught:
        result.get(timeout=1)
    assert isinstance(caught.value, TaskFailed) and caught.value.exc_type == "TaskRevoked"
    assert isinstance(result.result, TaskRevoked)
    assert h.app.broker.size(h.queue) == 0 and h.dead_reasons() == []  # acked, not dead
    slot = h.scoreboard.read(0)
    assert (slot.done, slot.failed, slot.state.name) == (1, 0, "IDLE")
    assert seen.outcomes == [(result.id, REVOKED, 0.0)]


def test_other_tasks_run_and_the_ids_are_read_once_until_the_bulletin_changes(
    h: Harness, bulletin: Bulletin, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = Reads(h.session.results, monkeypatch)
    add = task(h, lambda x, y: x + y, name="add")
    results = [add.delay(i, i) for i in range(20)]
    assert h.drain() == 20
    assert [r.get(timeout=1) for r in results] == [2 * i for i in range(20)]
    assert reads.count == 1  # the first task's; none of the others
    later = add.delay(1, 1)
    revoke(h, bulletin, later.id)
    h.run_next()
    assert reads.count == 2 and later.state == REVOKED


def test_a_child_inherits_its_masters_ids_and_reads_only_what_changed_since(
    h: Harness, bulletin: Bulletin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The master reads the whole set once, before it forks; each child it forks starts from
    the master's set and cursor rather than reading the whole set again."""
    h.app.backend.revoke(["old-1", "old-2"], 60)
    master = RevokedIds(h.app.backend, bulletin.reader(), MASTER_BACKSTOP)
    master.refresh()
    revoke(h, bulletin, "new")  # after the master's read
    reads = Reads(h.session.results, monkeypatch)
    child = master.inherited(h.session.results)
    child.refresh()
    assert reads.read == [(2, 1)]  # from the master's cursor: the one revocation since
    assert all(child.revoked(i) for i in ("old-1", "old-2", "new")) and len(child) == 3


def test_a_revocation_not_heard_of_is_read_by_the_backstop(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that missed the broadcast (another host's, or partitioned) catches up."""
    h.executor.revoked = RevokedIds(h.session.results, None, backstop=0.2)
    add = task(h, lambda x, y: x + y, name="add")
    add.delay(1, 1)
    h.run_next()  # read: nothing revoked
    late = add.delay(2, 2)
    h.app.backend.revoke([late.id], 60)  # stored, nobody told
    time.sleep(0.25)
    h.run_next()
    assert late.state == REVOKED


def test_an_expired_revocation_no_longer_holds(h: Harness, bulletin: Bulletin) -> None:
    result = task(h, lambda: "ran", name="f").delay()
    revoke(h, bulletin, result.id, ttl=0.1)
    time.sleep(0.15)
    h.run_next()
    assert result.get(timeout=1) == "ran"


def test_a_retry_of_a_revoked_task_is_discarded_when_it_comes_due(
    h: Harness, bulletin: Bulletin
) -> None:
    tries: list[int] = []

    def flaky(self: Any) -> None:
        tries.append(self.request.retries)
        raise self.retry(countdown=0)

    result = task(h, flaky, name="flaky", bind=True, max_retries=5).delay()
    h.run_next()
    revoke(h, bulletin, result.id)  # the next try waits in the broker with the same id
    h.run_next()
    assert tries == [0] and result.state == REVOKED
    assert h.app.broker.size(h.queue) == 0


def test_a_failed_read_keeps_the_ids_held_and_is_logged_once(
    h: Harness, bulletin: Bulletin, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """The child goes on working with what it holds, and reads again a second later."""
    add = task(h, lambda x, y: x + y, name="add")
    first = add.delay(1, 1)
    revoke(h, bulletin, first.id)
    h.run_next()  # read: first is revoked

    def down(since: int = 0) -> Revocations:
        raise BackendUnavailable("connection refused")

    monkeypatch.setattr(h.session.results, "revocations", down)
    bulletin.post_revoke()
    results = [add.delay(i, i) for i in range(3)]
    with caplog.at_level(logging.WARNING, logger="forkq.worker"):
        assert h.drain() == 3
    assert [r.get(timeout=1) for r in results] == [0, 2, 4]
    assert caplog.text.count("(revoked ids) unreachable") == 1
    assert h.executor.revoked.revoked(first.id)  # still held


def test_a_record_the_master_stored_is_kept_when_the_message_is_discarded(
    h: Harness, bulletin: Bulletin
) -> None:
    """A child terminated for a revoked task: its master stored "terminated while running"
    and gave the message back; the child that discards it keeps that record."""
    result = task(h, lambda: None, name="f").delay()
    record = revoked_record("terminated while running", "f")
    h.app.backend.store(result.id, REVOKED, encode_record(record), 60)
    revoke(h, bulletin, result.id)
    h.run_next()
    with pytest.raises(TaskRevoked, match="terminated while running"):
        result.get(timeout=1)


def test_a_redelivery_whose_record_is_revoked_is_discarded_without_the_revoked_ids(
    h: Harness,
) -> None:
    """A worker that has not read the revoked ids since (another host) gets the message of a
    task terminated elsewhere: the record its master stored is read, as for any redelivery,
    and the message discarded, even past the redelivery limit."""
    ran: list[int] = []
    result = task(h, lambda: ran.append(1), name="f", max_deliveries=1).delay()
    first = h.fetch()
    h.app.backend.store(
        result.id, REVOKED, encode_record(revoked_record("terminated while running", "f")), 60
    )
    h.child_died_holding(first)  # the master gives it back counted
    h.run_next()
    assert ran == [] and h.dead_reasons() == []
    assert len(h.executor.revoked) == 0  # not from the revoked ids
    with pytest.raises(TaskRevoked, match="terminated while running"):
        result.get(timeout=1)
    assert h.app.broker.size(h.queue) == 0


def test_a_revoked_chain_step_fails_what_follows_saying_so(h: Harness, bulletin: Bulletin) -> None:
    add = task(h, lambda x, y: x + y, name="add")
    workflow = chain(add.s(1, 1), add.s(2), add.s(3)).delay()
    first = workflow.parent.parent  # type: ignore[union-attr]
    revoke(h, bulletin, first.id)
    assert h.drain() == 1  # the first step, discarded; nothing else sent
    assert first.state == REVOKED
    with pytest.raises(TaskFailed, match=f"TaskRevoked: task {first.id} was revoked"):
        workflow.get(timeout=1)


def test_a_revoked_group_member_fails_the_groups_get(h: Harness, bulletin: Bulletin) -> None:
    add = task(h, lambda x, y: x + y, name="add")
    members = group(add.s(i, i) for i in range(3)).delay()
    revoke(h, bulletin, members[1].id)
    assert h.drain() == 3
    with pytest.raises(TaskRevoked, match=f"task {members[1].id} was revoked"):
        members.get(timeout=1)
    assert members.get(timeout=1, propagate=False)[0::2] == [0, 4]


def test_a_revoked_chord_member_fails_its_body_which_does_not_run(
    h: Harness, bulletin: Bulletin
) -> None:
    ran: list[Any] = []
    add = task(h, lambda x, y: x + y, name="add")
    total = task(h, lambda xs: ran.append(xs), name="total")
    body = chord([add.s(i, i) for i in range(3)], total.s()).delay()
    header = body.parent
    revoke(h, bulletin, header[0].id)  # type: ignore[index]
    h.drain()
    assert ran == []
    with pytest.raises(TaskFailed, match="revoked") as failed:
        body.get(timeout=1)
    assert failed.value.exc_type == "TaskRevoked"


def test_a_unique_tasks_lock_goes_with_its_revocation(h: Harness, bulletin: Bulletin) -> None:
    report = task(h, lambda day: day, name="report", unique_for=60)
    first = report.delay("mon")
    assert report.delay("mon").id == first.id  # locked while pending
    revoke(h, bulletin, first.id)
    h.run_next()
    assert first.state == REVOKED
    second = report.delay("mon")
    assert second.id != first.id  # the lock went with the discard
    h.run_next()
    assert second.get(timeout=1) == "mon"


def test_task_revoked_survives_pickling_and_names_what_became_of_it() -> None:
    error = TaskRevoked("t-1", exc_message="terminated while running")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is TaskRevoked and str(copy) == str(error)
    assert str(copy) == "task t-1 was revoked: terminated while running"


class Watched(dict[str, float]):
    """The ids' dict, counting whole passes over it."""

    passes = 0

    def items(self) -> Any:
        Watched.passes += 1
        return super().items()

    def values(self) -> Any:
        Watched.passes += 1
        return super().values()

    def __iter__(self) -> Iterator[str]:
        Watched.passes += 1
        return super().__iter__()


def test_expired_ids_go_without_a_pass_over_the_others(h: Harness) -> None:
    """In a child the set is its master's, shared copy-on-write: a pass over every entry
    would write every reference count and make each page the child's own."""
    backend = h.app.backend
    backend.revoke([f"long-{i}" for i in range(1_000)], 60)
    backend.revoke([f"short-{i}" for i in range(10)], 0.05)
    revoked = RevokedIds(backend)
    revoked.refresh()
    assert len(revoked) == 1_010
    revoked._ids = Watched(revoked._ids)
    Watched.passes = 0
    time.sleep(0.1)  # the short ones expire: what is under test is time passing
    backend.revoke(["late"], 60)
    revoked.refresh()
    assert Watched.passes == 0
    assert len(revoked) == 1_001 and not any(revoked.revoked(f"short-{i}") for i in range(10))
    assert revoked.revoked("long-0") and revoked.revoked("late")
