"""The events' state (forkq.events.state) and their JSON form (forkq.events.jsonable): pure."""

from __future__ import annotations

import math

import msgspec
import pytest

from forkq.events import (
    ChildRow,
    TaskEvent,
    TaskEventKind,
    WorkerEvent,
    WorkerEventKind,
    decode,
    encode,
)
from forkq.events.jsonable import event_json
from forkq.events.state import HEARTBEAT_GUESS, EventsState, WorkerStatus

CHILD = ChildRow(0, 101, "busy", "t1", "app.add", 3, rss=30 << 20, pss=20 << 20, uss=10 << 20)


def worker(kind: WorkerEventKind, at: float, **fields: object) -> WorkerEvent:
    return WorkerEvent(kind, "w1", "host1", 100, at, ("default",), 2, **fields)  # type: ignore[arg-type]


def task(kind: TaskEventKind, at: float, task_id: str = "t1") -> TaskEvent:
    return TaskEvent(kind, task_id, "app.add", "default", at, "w1", 0)


class TestWorkers:
    def test_a_heartbeat_gives_the_children_and_the_masters_memory(self) -> None:
        state = EventsState()
        state.fold(worker(WorkerEventKind.ONLINE, 10.0))
        state.fold(worker(WorkerEventKind.HEARTBEAT, 11.0, children=(CHILD,), master_rss=5))
        [view] = state.sorted_workers()
        assert view.children == (CHILD,) and view.master_rss == 5
        assert view.last_heartbeat == 11.0 and view.status(12.0) is WorkerStatus.ONLINE

    def test_offline_drops_the_children(self) -> None:
        state = EventsState()
        state.fold(worker(WorkerEventKind.HEARTBEAT, 11.0, children=(CHILD,)))
        state.fold(worker(WorkerEventKind.OFFLINE, 12.0))
        [view] = state.sorted_workers()
        assert view.status(12.5) is WorkerStatus.OFFLINE and view.children == ()

    def test_lost_after_three_heartbeat_intervals_of_silence(self) -> None:
        state = EventsState()
        state.fold(worker(WorkerEventKind.HEARTBEAT, 100.0))
        state.fold(worker(WorkerEventKind.HEARTBEAT, 102.0))  # every 2 s
        [view] = state.sorted_workers()
        assert view.interval == 2.0
        assert view.status(107.9) is WorkerStatus.ONLINE
        assert view.status(108.1) is WorkerStatus.LOST

    def test_with_one_heartbeat_the_interval_is_guessed(self) -> None:
        state = EventsState()
        state.fold(worker(WorkerEventKind.ONLINE, 0.0))
        [view] = state.sorted_workers()
        assert view.status(3 * HEARTBEAT_GUESS - 1) is WorkerStatus.ONLINE
        assert view.status(3 * HEARTBEAT_GUESS + 1) is WorkerStatus.LOST

    def test_a_task_event_keeps_its_worker_seen(self) -> None:
        state = EventsState()
        state.fold(worker(WorkerEventKind.HEARTBEAT, 100.0))
        state.fold(task(TaskEventKind.STARTED, 140.0))
        assert state.workers["w1"].status(150.0) is WorkerStatus.ONLINE

    def test_online_again_starts_afresh(self) -> None:
        state = EventsState()
        state.fold(worker(WorkerEventKind.HEARTBEAT, 1.0, children=(CHILD,)))
        state.fold(worker(WorkerEventKind.ONLINE, 2.0))
        assert state.workers["w1"].children == ()
        assert state.workers["w1"].last_heartbeat is None

    def test_workers_sorted_by_host_then_id(self) -> None:
        state = EventsState()
        for name, host in (("b", "h2"), ("c", "h1"), ("a", "h2")):
            state.fold(WorkerEvent(WorkerEventKind.ONLINE, name, host, 1, 1.0))
        assert [w.worker for w in state.sorted_workers()] == ["c", "a", "b"]


class TestTasks:
    def test_the_newest_task_events_are_kept_and_counted(self) -> None:
        state = EventsState(recent=3)
        for i in range(5):
            state.fold(task(TaskEventKind.SUCCEEDED, float(i), f"t{i}"))
        assert [e.task_id for e in state.tasks] == ["t2", "t3", "t4"]
        assert state.task_counts[TaskEventKind.SUCCEEDED] == 5

    def test_bodies_that_are_not_events_are_counted_and_skipped(self) -> None:
        state = EventsState()
        state.fold_bodies([b"junk", encode(task(TaskEventKind.RECEIVED, 1.0)), b""])
        assert state.skipped == 2 and len(state.tasks) == 1


class TestJson:
    def test_every_field_the_type_and_the_offset(self) -> None:
        shown = event_json(task(TaskEventKind.SENT, 1.0), "7")
        assert shown == {
            "offset": "7",
            "type": "task",
            "kind": "sent",
            "task_id": "t1",
            "name": "app.add",
            "queue": "default",
            "at": 1.0,
            "worker": "w1",
            "child": 0,
            "runtime": None,
            "reason": "",
            "args": "",
            "group": "",
            "group_size": 0,
            "group_body": "",
        }

    def test_a_heartbeat_from_before_runtime_and_restarts_decodes_with_their_defaults(
        self,
    ) -> None:
        old_child = {"index": 1, "pid": 2, "state": "busy", "task_id": "t1", "tasks_done": 4}
        old = {"type": "worker", "kind": "heartbeat", "worker": "w1", "host": "h", "pid": 1}
        event = decode(msgspec.msgpack.encode({**old, "at": 1.0, "children": [old_child]}))
        assert isinstance(event, WorkerEvent)
        (row,) = event.children
        assert (row.index, row.task_id, row.tasks_done) == (1, "t1", 4)
        assert (row.started_at, row.restarts) == (0.0, 0)

    @pytest.mark.parametrize("at", [math.inf, -math.inf, math.nan])
    def test_an_event_whose_time_is_not_a_number_is_not_an_event(self, at: float) -> None:
        body = {"type": "task", "kind": "sent", "task_id": "t", "name": "n", "queue": "q"}
        assert decode(msgspec.msgpack.encode({**body, "at": at})) is None
        assert decode(msgspec.msgpack.encode({**body, "at": 1.0})) is not None

    def test_children_in_full(self) -> None:
        shown = event_json(
            worker(WorkerEventKind.HEARTBEAT, 1.0, children=(ChildRow(1, 2, "idle"),)), "1-0"
        )
        assert shown["type"] == "worker" and shown["queues"] == ["default"]
        assert shown["children"] == [{**msgspec.structs.asdict(ChildRow(1, 2, "idle"))}]
