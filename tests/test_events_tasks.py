"""The task index (forkq.events.tasks) and the outcome series (forkq.events.series): pure."""

from __future__ import annotations

from forkq.events import TaskEvent, TaskEventKind
from forkq.events.series import OutcomeSeries
from forkq.events.tasks import TIMELINE, TaskFilter, TaskIndex, TaskPage


def event(kind: TaskEventKind, at: float, task_id: str = "t1", **fields: object) -> TaskEvent:
    fields = {"worker": "w1", "child": 0, **fields}
    return TaskEvent(kind, task_id, str(fields.pop("name", "app.add")), "default", at, **fields)  # type: ignore[arg-type]


class TestTaskIndex:
    def test_a_task_takes_its_newest_events_state_whatever_order_they_come_in(self) -> None:
        index = TaskIndex()
        index.fold(event(TaskEventKind.SUCCEEDED, 3.0, runtime=0.5))
        index.fold(event(TaskEventKind.STARTED, 2.0))  # a child's earlier event, read later
        task = index.get("t1")
        assert task is not None and task.state is TaskEventKind.SUCCEEDED
        assert [e.kind for e in task.timeline] == [TaskEventKind.STARTED, TaskEventKind.SUCCEEDED]
        assert task.runtime == 0.5 and task.first_at == 2.0

    def test_the_oldest_task_goes_first_when_full(self) -> None:
        index = TaskIndex(capacity=2)
        for n, task_id in enumerate(["a", "b", "c"]):
            index.fold(event(TaskEventKind.RECEIVED, float(n), task_id))
        assert index.get("a") is None and len(index) == 2

    def test_a_task_with_news_is_kept_over_an_older_one(self) -> None:
        index = TaskIndex(capacity=2)
        index.fold(event(TaskEventKind.RECEIVED, 1.0, "a"))
        index.fold(event(TaskEventKind.RECEIVED, 2.0, "b"))
        index.fold(event(TaskEventKind.SUCCEEDED, 3.0, "a"))
        index.fold(event(TaskEventKind.RECEIVED, 4.0, "c"))
        assert index.get("a") is not None and index.get("b") is None

    def test_a_timeline_is_bounded_keeping_the_first_and_the_newest(self) -> None:
        index = TaskIndex()
        for n in range(TIMELINE * 3):
            index.fold(event(TaskEventKind.RETRIED, float(n)))
        task = index.get("t1")
        assert task is not None and len(task.timeline) == TIMELINE
        assert task.timeline[0].at == 0.0 and task.timeline[-1].at == TIMELINE * 3 - 1

    def test_filters_and_search_newest_first_up_to_the_limit(self) -> None:
        index = TaskIndex()
        index.fold(event(TaskEventKind.FAILED, 1.0, "abc1", name="app.a"))
        index.fold(event(TaskEventKind.SUCCEEDED, 2.0, "abc2", name="app.b"))
        index.fold(event(TaskEventKind.FAILED, 3.0, "xyz3", name="app.a", worker="w2"))
        ids = lambda f, n=10: [t.task_id for t in index.newest(f, n)]  # noqa: E731
        assert ids(TaskFilter()) == ["xyz3", "abc2", "abc1"]
        assert ids(TaskFilter(state=TaskEventKind.FAILED)) == ["xyz3", "abc1"]
        assert ids(TaskFilter(name="app.b")) == ["abc2"]
        assert ids(TaskFilter(workers=frozenset({"w2", "w9"}))) == ["xyz3"]
        assert ids(TaskFilter(search="abc")) == ["abc2", "abc1"]
        assert ids(TaskFilter(), 1) == ["xyz3"]


class TestTaskPages:
    """Ten tasks t0..t9 (t9 the newest), odd ones failed; pages of three."""

    def index(self) -> TaskIndex:
        index = TaskIndex()
        for n in range(10):
            kind = TaskEventKind.FAILED if n % 2 else TaskEventKind.SUCCEEDED
            index.fold(event(kind, float(n), f"t{n}"))
        return index

    @staticmethod
    def ids(page: TaskPage) -> list[str]:
        return [t.task_id for t in page.tasks]

    def test_older_pages_down_to_the_oldest_and_newer_ones_back_up(self) -> None:
        index, every = self.index(), TaskFilter()
        first = index.page(every, 3)
        assert self.ids(first) == ["t9", "t8", "t7"] and first.newer is None
        assert first.older is not None
        second = index.page(every, 3, before=first.older)
        assert self.ids(second) == ["t6", "t5", "t4"] and second.newer is not None
        assert second.older is not None
        last = index.page(every, 3, before=index.page(every, 3, before=second.older).older)
        assert self.ids(last) == ["t0"] and last.older is None
        back = index.page(every, 3, after=second.newer)
        assert self.ids(back) == ["t9", "t8", "t7"] and back.newer is None
        assert (
            index.page(every, 3, after=last.newer).tasks
            == index.page(every, 3, before=second.older).tasks
        )  # t3 t2 t1 either way

    def test_a_page_keeps_the_filter(self) -> None:
        index, failed = self.index(), TaskFilter(state=TaskEventKind.FAILED)
        first = index.page(failed, 2)
        assert self.ids(first) == ["t9", "t7"]
        second = index.page(failed, 2, before=first.older)
        assert self.ids(second) == ["t5", "t3"] and second.older is not None
        assert self.ids(index.page(failed, 2, before=second.older)) == ["t1"]

    def test_new_tasks_do_not_move_an_older_page_and_news_takes_a_task_off_it(self) -> None:
        index, every = self.index(), TaskFilter()
        cursor = index.page(every, 3).older
        index.fold(event(TaskEventKind.RECEIVED, 20.0, "new"))
        assert self.ids(index.page(every, 3, before=cursor)) == ["t6", "t5", "t4"]
        index.fold(event(TaskEventKind.RETRIED, 21.0, "t5"))  # t5 is among the newest now
        assert self.ids(index.page(every, 3, before=cursor)) == ["t6", "t4", "t3"]
        assert self.ids(index.page(every, 2)) == ["t5", "new"]

    def test_an_empty_older_page_still_leads_back(self) -> None:
        index, every = self.index(), TaskFilter()
        page = index.page(every, 3, before=1)  # t0 is fold 1: nothing is older
        assert page.tasks == [] and page.older is None and page.newer is not None
        assert self.ids(index.page(every, 3, after=page.newer)) == ["t2", "t1", "t0"]


class TestOutcomeSeries:
    def test_counts_per_bucket_oldest_first_ending_now(self) -> None:
        series = OutcomeSeries(step=10.0, span=30.0)
        series.fold(event(TaskEventKind.SUCCEEDED, 105.0))
        series.fold(event(TaskEventKind.SUCCEEDED, 118.0))
        series.fold(event(TaskEventKind.FAILED, 119.0))
        series.fold(event(TaskEventKind.STARTED, 119.0))  # not an outcome
        buckets = series.read(now=121.0)
        assert buckets.start == 100.0
        assert buckets.succeeded == [1, 1, 0] and buckets.failed == [0, 1, 0]

    def test_buckets_older_than_the_span_are_forgotten(self) -> None:
        series = OutcomeSeries(step=10.0, span=30.0)
        series.fold(event(TaskEventKind.SUCCEEDED, 5.0))
        series.fold(event(TaskEventKind.SUCCEEDED, 1005.0))
        assert series.read(now=1005.0).succeeded == [0, 0, 1]
        assert series.read(now=25.0).succeeded == [0, 0, 0]  # the old one is gone


class TestMemorySeries:
    def test_each_heartbeat_adds_its_sums_and_the_oldest_go(self) -> None:
        from forkq.events import ChildRow, WorkerEvent, WorkerEventKind
        from forkq.events.series import MemorySeries

        series = MemorySeries(points=2)
        child = ChildRow(0, 2, "idle", rss=30, pss=20, uss=10)
        for at in (1.0, 2.0, 3.0):
            series.fold(WorkerEvent(WorkerEventKind.HEARTBEAT, "w1", "h", 1, at, (), 1, (child,),
                                    master_rss=50, master_pss=40, master_uss=5))  # fmt: skip
        series.fold(WorkerEvent(WorkerEventKind.OFFLINE, "w1", "h", 1, 4.0))
        points = series.of("w1")
        assert [p.at for p in points] == [2.0, 3.0]
        assert (points[0].rss, points[0].pss, points[0].uss) == (80, 60, 15)
        assert series.of("w2") == []


class TestCallText:
    def test_like_the_call_each_value_abbreviated_the_whole_bounded(self) -> None:
        from forkq.events.calls import ARGS_MAX, call_text

        assert call_text([1, "a"], {"key": 2}) == "1, 'a', key=2"
        assert call_text([], {}) == ""
        long = call_text(["x" * 10_000, list(range(1000))], {f"k{i}": i for i in range(50)})
        assert len(long) <= ARGS_MAX and "..." in long
        assert call_text(list(range(30)), {}).endswith(", ...")
