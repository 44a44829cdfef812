"""The Workflows pages on a SQLite store: a chord's members and body from what their events
say, a plain group's from their ids, progress counted from the members' states."""

from __future__ import annotations

import uuid

from forkq.events import TaskEventKind
from tests.dashboard.helpers import HOSTILE, dashboard, task_event

K = TaskEventKind


def field(page: str, name: str) -> str:
    return page.split(f'data-text="{name}">', 1)[1].split("<", 1)[0]


def test_a_chords_progress_members_and_body(url: str) -> None:
    chord = str(uuid.uuid4())
    members = [f"{chord}-{n}" for n in range(4)]
    bodies = [
        task_event(K.RECEIVED, m, group=chord, group_size=5, group_body="the-body") for m in members
    ]
    bodies += [task_event(K.SUCCEEDED, members[0]), task_event(K.SUCCEEDED, members[1])]
    bodies += [task_event(K.FAILED, members[2], reason="ValueError: no")]
    bodies += [task_event(K.RECEIVED, "the-body")]
    with dashboard(url, bodies) as client:
        listed = client.get("/workflows").text
        assert f'href="/workflows/{chord}"' in listed and "chord" in listed
        page = client.get(f"/workflows/{chord}").text
        assert (field(page, "succeeded"), field(page, "failed")) == ("2", "1")
        assert (field(page, "running"), field(page, "waiting"), field(page, "size")) == (
            "0", "2", "5",
        )  # fmt: skip  # one received (not started), one never seen, of the five the chord said
        assert 'width="40.0%"' in page and 'x="40.0%"' in page  # succeeded, then failed
        assert 'href="/tasks/the-body"' in page and 'data-state:body_state">received<' in page
        assert page.index(members[0]) < page.index(members[3])  # by their index


def test_a_plain_groups_members_by_their_ids_and_an_unknown_group(url: str) -> None:
    group = str(uuid.uuid4())
    bodies = [task_event(K.SUCCEEDED, f"{group}-{n}", name=HOSTILE) for n in range(3)]
    with dashboard(url, bodies) as client:
        page = client.get(f"/workflows/{group}").text
        assert field(page, "kind") == "group" and field(page, "size") == "3 seen"
        assert field(page, "succeeded") == "3"
        assert "<script>alert" not in page and "&lt;script&gt;" in page
        unknown = client.get("/workflows/no-such-group").text
        assert "No event tells of this group" in unknown
