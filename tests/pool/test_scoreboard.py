"""The scoreboard: slots written by one child, read by the master, never torn."""

from __future__ import annotations

import os
import time

import pytest

from forkq.pool.scoreboard import Scoreboard, SlotState


def test_round_trip_of_each_state() -> None:
    board = Scoreboard(3)
    slot = board.writer(1)
    slot.start(4242)
    assert (board.read(1).pid, board.read(1).state) == (4242, SlotState.STARTING)
    slot.idle()
    assert board.read(1).state == SlotState.IDLE
    slot.busy("id-1", "proj.add", "17", "q1", 30.0)
    view = board.read(1)
    assert (view.state, view.task_id, view.task_name, view.receipt, view.queue) == (
        SlotState.BUSY,
        "id-1",
        "proj.add",
        "17",
        "q1",
    )
    assert 29 < view.deadline - time.monotonic() <= 30
    assert view.started_at > 0 and view.heartbeat >= view.started_at
    slot.finished(failed=True)
    view = board.read(1)
    assert (view.state, view.done, view.failed, view.task_id) == (SlotState.IDLE, 1, 1, "")
    assert board.read(0).state == SlotState.EMPTY  # neighbours untouched
    board.clear(1)
    assert board.read(1).pid == 0


def test_unacked_pairs_survive_until_the_next_finish_and_only_whole_ones_are_kept() -> None:
    board = Scoreboard(1)
    slot = board.writer(0)
    slot.start(1)
    pairs = [("emails", "0-1732550000000-1"), ("q with spaces", "3-1732550000000-2")]
    slot.finished(failed=False, unacked=pairs)
    slot.busy("id-2", "proj.add", "0-1732550000000-3", "emails", None)
    assert board.read(0).unacked == tuple(pairs)  # still there while the next task runs
    many = [("q", f"0-1732550000000-{n}") for n in range(200)]  # more than the field holds
    slot.finished(failed=False, unacked=many)
    kept = board.read(0).unacked
    assert 50 < len(kept) < 200 and kept == tuple(many[: len(kept)])
    slot.finished(failed=False)
    assert board.read(0).unacked == ()


def test_a_write_cut_short_by_death_never_hangs_the_reader_and_drops_only_a_torn_list() -> None:
    from forkq.pool.scoreboard import _HEAD

    board = Scoreboard(1)
    slot = board.writer(0)
    slot.start(7)
    slot.finished(failed=False, unacked=[("q", "0-1-1")])
    board._map[0:4] = (slot._seq + 1).to_bytes(4, "little")  # odd: died mid-write
    for view in (board.read(0), board.read_final(0)):  # the list itself was not being written
        assert view.pid == 7 and view.unacked == (("q", "0-1-1"),)
    list_seq = slice(_HEAD.size, _HEAD.size + 4)
    board._map[list_seq] = (1).to_bytes(4, "little")  # died while rewriting the list
    for view in (board.read(0), board.read_final(0)):
        assert view.pid == 7 and view.unacked == ()
    slot.finished(failed=False, unacked=[("q", "0-1-2")])  # a write that completes
    assert board.read_final(0).unacked == (("q", "0-1-2"),)


def test_long_fields_are_truncated() -> None:
    board = Scoreboard(1)
    board.writer(0).busy("i" * 100, "n" * 500, "r" * 100, "q" * 100, None)
    view = board.read(0)
    assert (len(view.task_id), len(view.task_name), len(view.receipt)) == (48, 160, 64)
    assert (len(view.queue), view.deadline) == (64, 0.0)


@pytest.mark.timeout(60)
def test_a_forked_child_writes_and_the_parent_never_reads_a_torn_slot() -> None:
    board = Scoreboard(2)
    pairs = {"a" * 40: "A" * 150, "b" * 40: "B" * 150}
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        slot = board.writer(1)
        slot.start(os.getpid())
        os.write(ready_w, b"go")
        for i in range(200_000):
            task_id = "a" * 40 if i % 2 else "b" * 40
            slot.busy(task_id, pairs[task_id], str(i), "q", None)
        os._exit(0)
    try:
        assert os.read(ready_r, 2) == b"go"
        assert board.read(1).pid == pid
        reads = 0
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            view = board.read(1)
            if view.state == SlotState.BUSY:
                assert pairs[view.task_id] == view.task_name
                reads += 1
        assert reads > 100
    finally:
        os.close(ready_r)
        os.close(ready_w)
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def test_the_title_changes_once_per_batch_of_one_task_not_twice_per_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shown: list[str] = []
    monkeypatch.setattr("forkq.pool.scoreboard.setproctitle", shown.append)
    board = Scoreboard(1)
    writer = board.writer(0)
    writer.title = "forkq: app child 0"
    writer.waiting()
    for n in range(3):  # one batch of the same task
        writer.busy(f"id-{n}", "app.add", f"r{n}", "default", None)
        writer.finished(failed=False)
        assert board.read(0).state == SlotState.IDLE  # the master sees every finish at once
    writer.busy("id-3", "app.mul", "r3", "default", None)
    writer.finished(failed=False)
    writer.waiting()
    assert shown == [
        "forkq: app child 0 idle",
        "forkq: app child 0 busy app.add",
        "forkq: app child 0 busy app.mul",
        "forkq: app child 0 idle",
    ]
    board.close()


def test_taken_writes_the_receipt_in_place_and_busy_completes_it() -> None:
    board = Scoreboard(2)
    writer = board.writer(1)
    writer.start(42)
    writer.idle()
    writer.taken("a-long-receipt-7")
    slot = board.read(1)
    assert (slot.pid, slot.state, slot.receipt, slot.task_id) == (
        42,
        SlotState.BUSY,
        "a-long-receipt-7",
        "",
    )
    assert slot.deadline == 0 and board.read(0).pid == 0
    writer.busy("t-1", "proj.add", "a-long-receipt-7", "q1", 5.0)
    slot = board.read(1)
    assert (slot.task_id, slot.task_name, slot.queue) == ("t-1", "proj.add", "q1")
    assert slot.deadline > 0
    writer.finished(failed=False)
    writer.taken("r-8")  # shorter: nothing of the last receipt is left behind it
    assert board.read(1).receipt == "r-8"
    board.close()
