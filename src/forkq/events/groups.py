"""The groups and chords the task events tell of: each one's members (by their index where
known) and its body. Pure, like `TaskIndex`: events go in (`fold`), the index is read; the
members' states are the task index's.

A task is placed by its own event when that says (`group`: a chord's header member, which
names the chord's body too), else by the form of its id (a plain group's member,
`workflow.derived_member`); a task once placed stays placed, so its later events, which say
nothing of it, find it again.

Bounded: at most `capacity` groups, the one whose newest event is oldest dropped first, and
`MEMBERS` members each (a group of a million tasks shows its first ones and its count);
only kept members and bodies are placed, so the placed tasks are bounded by both.
"""

from __future__ import annotations

from collections import OrderedDict

import msgspec

from forkq.events.values import TaskEvent
from forkq.events.workflow import derived_member

CAPACITY = 2_000  # groups kept
MEMBERS = 500  # members kept per group: with CAPACITY, a million task ids at most


class GroupView(msgspec.Struct):
    """A group or chord: its members' task ids by index (-1: not known), its size where a
    member said it (0: not known: a plain group's), and its body's task id (a chord's)."""

    group_id: str
    first_at: float
    last_at: float
    size: int = 0
    members: dict[str, int] = msgspec.field(default_factory=dict)
    body: str = ""
    seen: int = 0  # members known: the highest index seen + 1, or those kept without one

    @property
    def is_chord(self) -> bool:
        return bool(self.size or self.body)


class GroupIndex:
    """Groups by id, in the order of their newest event (the newest last)."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._groups: OrderedDict[str, GroupView] = OrderedDict()
        self._placed: dict[str, str] = {}  # a kept member's (or body's) id: its group's id

    def __len__(self) -> int:
        return len(self._groups)

    def get(self, group_id: str) -> GroupView | None:
        return self._groups.get(group_id)

    def newest(self, limit: int) -> list[GroupView]:
        found: list[GroupView] = []
        for group in reversed(self._groups.values()):
            if len(found) == limit:
                break
            found.append(group)
        return found

    def fold(self, event: TaskEvent) -> None:
        placed = self._placed.get(event.task_id)
        if placed is not None and placed in self._groups:
            self._group(placed, event.at)
        elif event.group:
            group = self._member(event.group, event.task_id, _index_in(event), event.at)
            group.size = event.group_size
            if event.group_body and not group.body:
                group.body = event.group_body
                self._placed[event.group_body] = event.group
        elif (derived := derived_member(event.task_id)) is not None:
            self._member(derived[0], event.task_id, derived[1], event.at)

    def _member(self, group_id: str, task_id: str, index: int, at: float) -> GroupView:
        """A member seen for the first time (or again, past MEMBERS: then only counted by its
        index, which a plain group's members always have)."""
        group = self._group(group_id, at)
        if index >= 0:
            group.seen = max(group.seen, index + 1)
        if len(group.members) < MEMBERS:
            group.members[task_id] = index
            self._placed[task_id] = group_id
            if index < 0:
                group.seen += 1
        return group

    def _group(self, group_id: str, at: float) -> GroupView:
        group = self._groups.get(group_id)
        if group is None:
            group = self._groups[group_id] = GroupView(group_id, at, at)
            if len(self._groups) > self.capacity:
                _, dropped = self._groups.popitem(last=False)
                for task_id in (*dropped.members, dropped.body):
                    self._placed.pop(task_id, None)
        else:
            group.last_at = max(group.last_at, at)
            self._groups.move_to_end(group_id)
        return group


def _index_in(event: TaskEvent) -> int:
    """A chord member's index, where its id has the derived form; -1 otherwise."""
    derived = derived_member(event.task_id)
    return derived[1] if derived is not None and derived[0] == event.group else -1
