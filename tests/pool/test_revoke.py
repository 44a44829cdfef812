"""The master's `revoke` command (pool/revoke.py) on a pool of fake children: what it posts on
the bulletin, which children it signals and why, and the arguments it refuses; and what a
child reads of it (pool/bulletin.py)."""

from __future__ import annotations

import signal
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from forkq.pool.bulletin import TERMINATING_AT_ONCE, Bulletin
from forkq.pool.control import BadArguments
from forkq.pool.revoke import revoke, terminating_signal
from forkq.pool.scoreboard import Scoreboard
from forkq.pool.watch import Ending, Verdict


class Pool:
    """Two children: 0 busy with task "t-0", 1 idle; verdicts recorded, nothing killed."""

    title = "forkq: test"

    def __init__(self) -> None:
        self.scoreboard = Scoreboard(2)
        self.bulletin = Bulletin()
        self.verdicts: list[Verdict] = []
        busy = self.scoreboard.writer(0)
        busy.start(100)
        busy.busy("t-0", "proj.slow", "r-0", "default", None)
        self.scoreboard.writer(1).start(101)
        self.scoreboard.writer(1).idle()

    def child_slots(self) -> Sequence[tuple[int, int]]:
        return [(0, 100), (1, 101)]

    def enforce(self, verdicts: list[Verdict]) -> None:
        self.verdicts += verdicts


@pytest.fixture
def pool() -> Iterator[Pool]:
    made = Pool()
    yield made
    made.scoreboard.close()
    made.bulletin.close()


def test_a_revoke_is_posted_for_the_children_to_read_again(pool: Pool) -> None:
    reader = pool.bulletin.reader()
    reply = revoke(pool, {"ids": ["t-0", "t-9"]})
    assert (reply["revokes"], reply["terminated"], reader.revokes()) == (1, [], 1)
    assert pool.verdicts == []  # no terminate: the running task goes on
    assert revoke(pool, {"ids": ["t-1"]})["revokes"] == 2


def test_terminate_signals_only_the_child_running_a_revoked_task(pool: Pool) -> None:
    reader = pool.bulletin.reader()
    reply = revoke(pool, {"ids": ["t-9", "t-0"], "terminate": True})
    assert reply["terminated"] == [{"pid": 100, "task_id": "t-0", "signal": "SIGTERM"}]
    assert pool.verdicts == [Verdict(100, signal.SIGTERM, Ending.REVOKED, "t-0", "proj.slow[t-0]")]
    assert reader.terminating("t-0") and not reader.terminating("t-9")
    assert not reader.terminating("")


def test_terminate_finds_a_task_whose_id_is_longer_than_its_slot_holds(pool: Pool) -> None:
    long_id = "a-long-task-id-" + "x" * 100  # a slot holds its first 48 bytes
    busy = pool.scoreboard.writer(1)
    busy.start(101)
    busy.busy(long_id, "proj.slow", "r-1", "default", None)
    reader = pool.bulletin.reader()
    reply = revoke(pool, {"ids": [long_id], "terminate": True})
    assert reply["terminated"] == [{"pid": 101, "task_id": long_id, "signal": "SIGTERM"}]
    assert reader.terminating(long_id)  # as the child running it will ask, with its whole id


def test_terminate_with_another_signal(pool: Pool) -> None:
    revoke(pool, {"ids": ["t-0"], "terminate": True, "signal": "kill"})
    assert [v.signum for v in pool.verdicts] == [signal.SIGKILL]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({}, "ids must be a list of 1 to 200 task ids"),
        ({"ids": []}, "ids must be a list"),
        ({"ids": "t-0"}, "ids must be a list"),
        ({"ids": ["t"] * 201}, "ids must be a list"),
        ({"ids": [1]}, "each task id must be a string of 1 to 255 characters"),
        ({"ids": ["x" * 256]}, "each task id must be a string"),
        ({"ids": ["t-0"], "terminate": "yes"}, "terminate must be true or false"),
        ({"ids": ["t-0"], "terminate": True, "signal": "SIGNOPE"}, "unknown signal 'SIGNOPE'"),
        ({"ids": ["t-0"], "terminate": True, "signal": "INT"}, "SIGINT would not end the child"),
    ],
)
def test_bad_arguments_are_refused_and_nothing_is_posted(
    pool: Pool, args: dict[str, Any], error: str
) -> None:
    with pytest.raises(BadArguments, match=error):
        revoke(pool, args)
    assert (pool.bulletin.posted.revokes, pool.verdicts) == (0, [])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("SIGTERM", signal.SIGTERM),
        ("term", signal.SIGTERM),
        (" SIGKILL ", signal.SIGKILL),
        ("9", signal.SIGKILL),
        ("SIGUSR2", signal.SIGUSR2),
        ("ABRT", signal.SIGABRT),
    ],
)
def test_signals_that_end_a_child_are_taken_by_name_or_number(
    name: str, expected: signal.Signals
) -> None:
    assert terminating_signal(name) is expected


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("SIGINT", "children ignore it"),
        ("HUP", "children ignore it"),
        ("SIGUSR1", "writes its stacks"),
        ("SIGALRM", "soft time limit"),
        ("SIGCHLD", "does not end a process"),
        ("SIGSTOP", "pauses a process"),
        ("SIGPIPE", "Python ignores it"),
        ("17", "does not end a process"),  # SIGCHLD by number
    ],
)
def test_signals_that_would_leave_the_child_running_are_refused(name: str, why: str) -> None:
    with pytest.raises(BadArguments, match=why):
        terminating_signal(name)


def test_the_bulletin_keeps_the_last_terminated_ids() -> None:
    posted = Bulletin(("default",))
    try:
        reader = posted.reader()
        for n in range(TERMINATING_AT_ONCE + 4):
            posted.post_terminating(f"task-{n}")
        assert not reader.terminating("task-3") and reader.terminating("task-4")
        assert reader.terminating(f"task-{TERMINATING_AT_ONCE + 3}")
        long_id = "x" * 100  # compared by its first 64 bytes, as stored
        posted.post_terminating(long_id)
        assert reader.terminating(long_id)
        assert reader.read().queues == ("default",)  # the rest of the page untouched
    finally:
        posted.close()
