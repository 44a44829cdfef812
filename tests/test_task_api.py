"""Task options Celery users write, call-site argument checks, and the worker's conversion of
arguments to the parameters' annotations (through the real executor, on the memory engines)."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from unittest import mock

import msgspec
import pytest

from forkq import ConfigurationError, Forkq, TaskFailed
from forkq.arguments import convert
from forkq.exceptions import ArgumentError
from forkq.states import STARTED
from forkq.task import TaskOptions
from tests.worker.test_executor import Harness


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.scoreboard.close()


@pytest.fixture
def app(h: Harness) -> Forkq:
    return h.app


def queued(h: Harness) -> int:
    return h.app.broker.size(h.queue)


class TestOptions:
    def test_an_unknown_option_names_the_task_and_every_supported_option(self, app: Forkq) -> None:
        def job() -> None: ...

        with pytest.raises(ConfigurationError) as error:
            app.task(retries=3, queu="q")(job)
        message = str(error.value)
        assert f"task {__name__}.job: unknown options queu, retries; supported: " in message
        for field in msgspec.structs.fields(TaskOptions):  # the list follows the struct
            if field.name != "throttle":  # made from the limits' options, not one itself
                assert field.name in message
        assert "throttle" not in message

    def test_acks_late_false_is_refused_with_the_reason(self, app: Forkq) -> None:
        app.task(acks_late=True, reject_on_worker_lost=True)(lambda: None)
        with pytest.raises(ConfigurationError, match=r"acks_late=False .* idempotent"):
            app.task(acks_late=False)(lambda: None)

    def test_reject_on_worker_lost_false_fails_at_the_first_lost_process(self, app: Forkq) -> None:
        task = app.task(reject_on_worker_lost=False)(lambda: None)
        assert task.options.max_deliveries == 1
        with pytest.raises(ConfigurationError, match="max_deliveries=1"):
            app.task(reject_on_worker_lost=False, max_deliveries=3)(lambda: None)

    def test_expires_is_a_default_that_apply_async_overrides(self, h: Harness) -> None:
        task = h.app.task(name="short_lived", expires=30)(lambda: None)
        before = time.time()
        task.delay()
        assert before + 30 <= h.app.codec.decode(h.fetch().body).expires <= time.time() + 30
        moment = datetime.now(timezone.utc) + timedelta(hours=1)
        task.apply_async(expires=moment)
        assert h.app.codec.decode(h.fetch().body).expires == moment.timestamp()
        before = time.time()
        task.map([(), ()])
        for _ in range(2):
            assert before + 30 <= h.app.codec.decode(h.fetch().body).expires <= time.time() + 30

    @pytest.mark.parametrize("expires", [0, -1, float("inf"), datetime(2030, 1, 1)])
    def test_a_bad_expires_is_refused(self, app: Forkq, expires: Any) -> None:
        with pytest.raises(ConfigurationError, match="expires"):
            app.task(expires=expires)(lambda: None)

    @pytest.mark.parametrize(
        ("kwargs", "wrong"),
        [
            ({"countdown": "5"}, "countdown must be a number"),
            ({"countdown": -1}, "countdown must be a number"),
            ({"eta": datetime(2030, 1, 1)}, "eta must be a timezone-aware datetime"),
            ({"eta": "tomorrow"}, "eta must be an aware datetime or a Unix time"),
            ({"countdown": 5, "eta": time.time()}, "give countdown or eta, not both"),
            ({"max_retries": "3"}, "max_retries must be an int"),
            ({"max_retries": -1}, "max_retries must be an int"),
        ],
    )
    def test_bad_retry_kwargs_are_refused_naming_the_task(
        self, app: Forkq, kwargs: dict[str, Any], wrong: str
    ) -> None:
        def fetch() -> None: ...

        with pytest.raises(
            ConfigurationError, match=f"task {__name__}.fetch: retry_kwargs: {wrong}"
        ):
            app.task(autoretry_for=(OSError,), retry_kwargs=kwargs)(fetch)
        moment = datetime.now(timezone.utc)
        for good in ({"countdown": 5.5}, {"eta": moment}, {"eta": 0}, {"max_retries": None}):
            app.task(name=f"ok{uuid.uuid4().hex}", retry_kwargs=good)(fetch)

    def test_calls_follow_options_replaced_after_the_first_call(self, h: Harness) -> None:
        task = h.app.task(name="moved")(lambda: None)
        task.delay()
        task.map([()])
        task.options = msgspec.structs.replace(task.options, queue="q2", priority=6, expires=30)
        before = time.time()
        task.delay()
        task.map([()])
        task.apply_async()
        sent = [h.app.codec.decode(d.body) for d in h.session.fetch(["q2"], 5, 0)]
        assert [(m.queue, m.priority) for m in sent] == [("q2", 6)] * 3
        assert all(before + 30 <= m.expires <= time.time() + 30 for m in sent)
        assert queued(h) == 2  # the calls made before the change

    def test_track_started_per_task_overrides_the_app(self, h: Harness) -> None:
        seen = []

        def probe(self: Any) -> None:  # the state the caller sees while the task runs
            seen.append(self.app.AsyncResult(self.request.id).state)

        h.app.task(name="tracked", bind=True, track_started=True)(probe).delay()
        h.app.task(name="untracked", bind=True)(probe).delay()
        h.run_next()
        h.run_next()
        assert seen == [STARTED, "PENDING"]


class TestCallSite:
    def test_arguments_that_do_not_bind_fail_in_the_caller(self, h: Harness) -> None:
        add = h.app.task(name="add")(lambda x, y: x + y)
        for call in (lambda: add.delay(1), lambda: add.delay(1, 2, 3), lambda: add.delay(1, z=2)):
            with pytest.raises(ArgumentError, match="task add: "):
                call()
        with pytest.raises(TypeError):  # what `except TypeError` around a Celery call expects
            add.apply_async((1,))
        with pytest.raises(ArgumentError):
            add.map([(1, 2), (3,)])
        assert queued(h) == 0
        add.delay(1, y=2)
        assert queued(h) == 1

    def test_delay_is_apply_async_so_patching_apply_async_catches_it(self, h: Harness) -> None:
        add = h.app.task(name="add")(lambda x, y: x + y)
        with mock.patch.object(add, "apply_async") as apply_async:
            add.delay(1, y=2)
        apply_async.assert_called_once_with((1,), {"y": 2})
        assert queued(h) == 0

    def test_typing_false_sends_as_given(self, h: Harness) -> None:
        h.app.task(name="loose", typing=False)(lambda x: x).delay()
        assert queued(h) == 1

    def test_bound_task_is_checked_without_self(self, h: Harness) -> None:
        fetch = h.app.task(name="fetch", bind=True)(lambda self, url: url)
        fetch.delay("u")
        with pytest.raises(ArgumentError, match="too many positional"):
            fetch.delay(fetch, "u")

    def test_an_argument_json_cannot_hold_is_named(self, h: Harness) -> None:
        task = h.app.task(name="store")(lambda key, value=None: None)
        with pytest.raises(ArgumentError, match=r"task store: argument 'value' \(position 1\)"):
            task.delay("k", object())
        with pytest.raises(ArgumentError, match="task store: argument 'value' cannot be sent"):
            task.delay("k", value={1, object()})
        with pytest.raises(ArgumentError, match="argument 'value'"):
            task.map([("k", 1), ("k", object())])
        assert queued(h) == 0


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Order(msgspec.Struct):
    id: uuid.UUID
    total: Decimal


def describe(when: datetime, ids: list[uuid.UUID], point: Point, *, order: Order) -> str:
    assert isinstance(when, datetime) and when.tzinfo is not None
    assert all(isinstance(i, uuid.UUID) for i in ids)
    assert isinstance(point, Point) and isinstance(order.total, Decimal)
    return f"{when.isoformat()} {len(ids)} {point.x + point.y} {order.total}"


class TestConversion:
    def test_annotated_arguments_arrive_as_their_types(self, h: Harness) -> None:
        task = h.app.task(name="describe")(describe)
        when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        order = Order(uuid.uuid4(), Decimal("12.50"))
        result = task.delay(when, [uuid.uuid4()], Point(1, 2), order=order)
        h.run_next()
        assert result.get(timeout=1) == "2026-01-02T03:04:05+00:00 1 3 12.50"

    def test_a_mismatch_is_dead_lettered_with_the_reason(self, h: Harness) -> None:
        ran = []

        def count(n: int) -> None:
            ran.append(n)

        result = h.app.task(name="count")(count).delay("three")  # binds; types: the worker's
        h.run_next()
        assert ran == []
        [reason] = h.dead_reasons()
        assert reason == "task count: argument 'n': Expected `int`, got `str`"
        with pytest.raises(TypeError) as failed:  # ArgumentError is a TypeError
            result.get(timeout=1)
        assert isinstance(failed.value, TaskFailed)
        assert failed.value.exc_type == "ArgumentError"

    def test_unannotated_tasks_have_no_conversion(self, app: Forkq) -> None:
        task = app.task(name="plain")(lambda x, y: x)
        assert task.conversion is None
        args, kwargs = ["2026-01-01"], {"y": 1}
        assert convert(task, args, kwargs) == (args, kwargs)

    def test_varargs_kwargs_and_unsupported_annotations(self, app: Forkq) -> None:
        class Opaque:  # no JSON form: its argument passes as it came
            pass

        def f(a: Opaque, *rest: Decimal, **extra: datetime) -> None: ...

        task = app.task(name="f")(f)
        args, kwargs = convert(task, ["x", "1.5", "2"], {"at": "2026-01-01T00:00:00Z"})
        assert args == ["x", Decimal("1.5"), Decimal("2")]
        assert kwargs == {"at": datetime(2026, 1, 1, tzinfo=timezone.utc)}
        with pytest.raises(ArgumentError, match=r"argument '\*args\[1\]'"):
            convert(task, ["x", "1", []], {})
