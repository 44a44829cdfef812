"""Groups and chords as the task events tell of them: explicit membership (a chord's members
and body), a plain group's members by the form of their ids, later events placed again, and
the bounds."""

from __future__ import annotations

import uuid

import pytest

from forkq.events import TaskEvent, TaskEventKind, groups
from forkq.events.groups import GroupIndex
from forkq.events.workflow import NONE, derived_member, membership
from forkq.flow import ChainNode, ChordRef, Flow, Gather, TaskNode

K = TaskEventKind


def event(kind: TaskEventKind, task_id: str, at: float = 1.0, **fields: object) -> TaskEvent:
    return TaskEvent(kind, task_id, "add", "q", at, **fields)  # type: ignore[arg-type]


def test_a_chords_members_and_body_are_placed_by_what_their_events_say() -> None:
    index = GroupIndex()
    chord = "c" * 8
    for n in range(3):
        index.fold(
            event(K.RECEIVED, f"custom-{n}", group=chord, group_size=3, group_body="the-body")
        )
        index.fold(event(K.SUCCEEDED, f"custom-{n}", at=2.0))  # says nothing: placed again
    index.fold(event(K.RECEIVED, "the-body", at=3.0))  # placed by its members' events
    group = index.get(chord)
    assert group is not None and group.is_chord
    assert (group.size, group.seen, group.body, group.last_at) == (3, 3, "the-body", 3.0)
    assert group.members == {"custom-0": -1, "custom-1": -1, "custom-2": -1}  # ids of one's own


def test_a_plain_groups_members_are_known_by_their_derived_ids() -> None:
    index = GroupIndex()
    gid = str(uuid.uuid4())
    for n in (2, 0, 1):
        index.fold(event(K.SUCCEEDED, f"{gid}-{n}"))
    index.fold(event(K.SUCCEEDED, str(uuid.uuid4())))  # a task alone
    index.fold(event(K.SUCCEEDED, "report-2026-1"))  # an id of one's own, ending in a number
    [group] = index.newest(10)
    assert group.group_id == gid and not group.is_chord
    assert group.members == {f"{gid}-2": 2, f"{gid}-0": 0, f"{gid}-1": 1}
    assert derived_member(f"{gid}-7") == (gid, 7) and derived_member(gid) is None


def test_the_oldest_group_goes_first_and_its_tasks_are_forgotten() -> None:
    index = GroupIndex(capacity=2)
    groups = [str(uuid.uuid4()) for _ in range(3)]
    for at, gid in enumerate(groups):
        index.fold(event(K.RECEIVED, f"{gid}-0", at=float(at)))
    assert [g.group_id for g in index.newest(5)] == groups[:0:-1]
    assert index.get(groups[0]) is None and len(index) == 2
    index.fold(event(K.SUCCEEDED, f"{groups[1]}-0", at=9.0))  # its newest event now
    assert [g.group_id for g in index.newest(5)] == [groups[1], groups[2]]


def test_membership_comes_from_the_flow_a_message_carries() -> None:
    body = TaskNode(id="b", task="collect", queue="q")
    then = ChainNode(steps=(body, TaskNode(id="after", task="more", queue="q")))
    assert membership(None) is NONE
    assert membership(Flow(chord=ChordRef(id="c1", size=4, body=then))) == ("c1", 4, "b")
    assert membership(Flow(gather=Gather(id="c1", size=4))) is NONE  # a body: not a member


def test_members_past_the_cap_are_counted_not_kept_and_a_dropped_group_stays_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(groups, "MEMBERS", 3)
    index = GroupIndex(capacity=1)
    gid, other = str(uuid.uuid4()), str(uuid.uuid4())
    for n in range(10):
        index.fold(event(K.RECEIVED, f"{gid}-{n}"))
        index.fold(event(K.SUCCEEDED, f"{gid}-{n}"))  # counted once, not twice
    group = index.get(gid)
    assert group is not None and len(group.members) == 3 and group.seen == 10
    index.fold(event(K.RECEIVED, f"{other}-0", at=2.0))  # pushes the first group out
    index.fold(event(K.SUCCEEDED, "custom-id", at=3.0))  # a task of no group
    assert index.get(gid) is None and [g.group_id for g in index.newest(5)] == [other]
    assert not index._placed.keys() - {f"{other}-0"}  # the dropped group's tasks forgotten
