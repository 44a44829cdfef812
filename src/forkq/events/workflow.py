"""Which group or chord a task belongs to, as its `sent` and `received` events say it.

A chord's header members carry their chord (`Flow.chord`: its id, its size and its body):
their events say so explicitly, the body's task id included. A plain group's
members carry nothing of their group (they are sent side by side and go their own ways), but
forkq gives each the id `<group id>-<n>` (`flow.member_ids`), the group id being a UUID
forkq made: `derived_member` reads that form back. A group given ids of one's own is not
recognised; its tasks are listed as any other.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from forkq.flow import ChainNode, Flow, Node, TaskNode

_MEMBER = re.compile(
    r"(?P<group>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-(?P<n>[0-9]{1,9})"
)


class Membership(NamedTuple):
    """TaskEvent's fields of the same names."""

    group: str = ""  # the chord the task is a header member of
    group_size: int = 0  # its members
    group_body: str = ""  # the task id of its body's first step ("": a group or chord)


NONE = Membership()


def membership(flow: Flow | None) -> Membership:
    """What a message's flow says of its workflow (NONE for most messages: no flow)."""
    if flow is None or flow.chord is None:
        return NONE
    return Membership(flow.chord.id, flow.chord.size, _first_task(flow.chord.body))


def _first_task(node: Node) -> str:
    while isinstance(node, ChainNode) and node.steps:
        node = node.steps[0]
    return node.id if isinstance(node, TaskNode) else ""


def derived_member(task_id: str) -> tuple[str, int] | None:
    """(group id, index) of a member id forkq derived from its group's, else None."""
    found = _MEMBER.fullmatch(task_id)
    return None if found is None else (found["group"], int(found["n"]))
