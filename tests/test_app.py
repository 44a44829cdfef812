"""The app and task API: naming, options, settings, publishing, AsyncResult."""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from forkq import (
    ConfigurationError,
    Forkq,
    MaxRetriesExceeded,
    ResultTimeout,
    Retry,
    TaskFailed,
)
from forkq.engines.contract import MAX_DELAY, Consumer, Delivery, lease_ttl_from_url
from forkq.result import encode_record, failure_record, success_record
from forkq.settings import Settings
from forkq.states import FAILURE, PENDING, SUCCESS
from forkq.task import Request

C = Consumer("w", "w/0")


@pytest.fixture
def app() -> Forkq:
    return Forkq("proj", broker=f"memory://{uuid.uuid4().hex}")


def fetch(app: Forkq, queue: str | None = None) -> list[Delivery]:
    """What one consumer fetches now, one message at most."""
    queues = [queue or app.settings.default_queue]
    return app.broker.consumer(C, app.backend).fetch(queues, 1, 0)


def fetch_message(app: Forkq, queue: str | None = None) -> Any:
    [delivery] = fetch(app, queue)
    return app.codec.decode(delivery.body)


class TestNaming:
    def test_module_and_function(self, app: Forkq) -> None:
        @app.task
        def add(x: int, y: int) -> int:
            return x + y

        assert add.name == f"{__name__}.add" and app.tasks[add.name] is add
        assert add(2, 3) == 5  # calling the task runs it here, like the function

    def test_explicit_name(self, app: Forkq) -> None:
        @app.task(name="custom.name")
        def f() -> None: ...

        assert "custom.name" in app.tasks

    def test_main_module_uses_the_app_name(self, app: Forkq) -> None:
        def g() -> None: ...

        g.__module__ = "__main__"
        assert app.task(g).name == "proj.g"

    @pytest.mark.parametrize("options", [{"priority": 10}, {"max_retries": -1}, {"time_limit": 0}])
    def test_bad_options(self, app: Forkq, options: dict[str, Any]) -> None:
        with pytest.raises(ConfigurationError):
            app.task(**options)(lambda: None)


class TestSettings:
    def test_env_overrides_defaults_and_arguments_override_env(self) -> None:
        env = {"FORKQ_BROKER_URL": "sqlite:///env.db", "FORKQ_RESULT_TTL": "5"}
        assert Settings.from_env(env).broker_url == "sqlite:///env.db"
        assert Settings.from_env(env).result_ttl == 5.0
        assert Settings.from_env(env, broker_url="memory://x").broker_url == "memory://x"
        assert Settings.from_env({}).broker_url == "sqlite:///forkq.sqlite3"

    def test_backend_defaults_to_broker(self) -> None:
        assert Settings.from_env({}, broker_url="memory://a").backend_url == "memory://a"

    def test_bad_env_value_names_the_variable(self) -> None:
        with pytest.raises(ConfigurationError, match="FORKQ_RESULT_TTL"):
            Settings.from_env({"FORKQ_RESULT_TTL": "soon"})

    @pytest.mark.parametrize(
        ("env", "setting", "value"),
        [({"FORKQ_EAGER": word}, "eager", True) for word in ("1", "true", "Yes", "ON")]
        + [({"FORKQ_IGNORE_RESULT": no}, "ignore_result", False) for no in ("0", "False", "off")]
        + [({"FORKQ_MAX_MESSAGE_BYTES": " 4096 "}, "max_message_bytes", 4096),
           ({"FORKQ_DEAD_LETTER_TTL": "1e3"}, "dead_letter_ttl", 1000.0),
           ({"FORKQ_RESULT_BACKEND": "memory://r"}, "result_backend", "memory://r"),
           ({"FORKQ_SECRET": " s "}, "secret", " s "),
           ({"FORKQ_EAGER": ""}, "eager", False)],
    )  # fmt: skip
    def test_env_values_convert_to_the_settings_type(
        self, env: dict[str, str], setting: str, value: object
    ) -> None:
        got = getattr(Settings.from_env(env), setting)
        assert (got, type(got)) == (value, type(value))

    @pytest.mark.parametrize(
        ("name", "raw", "kind"),
        [("FORKQ_EAGER", "maybe", "bool"), ("FORKQ_MAX_MESSAGE_BYTES", "4k", "int"),
         ("FORKQ_RESULT_TTL", "1 day", "float")],
    )  # fmt: skip
    def test_an_env_value_of_the_wrong_type_says_which_type(
        self, name: str, raw: str, kind: str
    ) -> None:
        with pytest.raises(ConfigurationError) as error:
            Settings.from_env({name: raw})
        assert str(error.value).startswith(f"{name}={raw!r} is not a valid {kind}")

    def test_unknown_setting(self) -> None:
        with pytest.raises(ConfigurationError, match="bogus"):
            Settings.from_env({}, bogus=1)

    def test_env_is_read_when_the_app_is_made(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FORKQ_BROKER_URL", "memory://from-env")
        assert Forkq().settings.broker_url == "memory://from-env"
        monkeypatch.setenv("FORKQ_BROKER_URL", "memory://changed")
        assert Forkq().settings.broker_url == "memory://changed"


class TestPublishing:
    def test_delay_publishes_the_call(self, app: Forkq) -> None:
        @app.task(queue="high", priority=7)
        def mul(x: int, y: int = 1) -> int:
            return x * y

        result = mul.delay(3, y=4)
        message = fetch_message(app, "high")
        assert (message.id, message.task, message.args, message.kwargs) == (
            result.id,
            mul.name,
            [3],
            {"y": 4},
        )
        assert (message.queue, message.priority, message.retries) == ("high", 7, 0)

    def test_countdown_hides_the_message_until_due(self, app: Forkq) -> None:
        app.send_task("t", countdown=30)
        assert fetch(app) == []
        assert app.broker.size("default") == 1
        app.send_task("t2", countdown=0)
        assert fetch_message(app).task == "t2"

    def test_eta_datetime(self, app: Forkq) -> None:
        app.send_task("t", eta=datetime.now(timezone.utc) - timedelta(seconds=1))
        assert fetch_message(app).eta == pytest.approx(time.time(), abs=5)

    def test_naive_eta_and_both_countdown_and_eta_are_refused(self, app: Forkq) -> None:
        with pytest.raises(ConfigurationError, match="timezone-aware"):
            app.send_task("t", eta=datetime.now())
        with pytest.raises(ConfigurationError, match="not both"):
            app.send_task("t", countdown=1, eta=time.time())

    def test_expires_number_is_seconds_from_now(self, app: Forkq) -> None:
        app.send_task("t", expires=60)
        assert fetch_message(app).expires == pytest.approx(time.time() + 60, abs=5)

    def test_map_publishes_one_message_per_call(self, app: Forkq) -> None:
        @app.task
        def square(x: int) -> int:
            return x * x

        results = square.map([(i,) for i in range(25)])
        assert len({r.id for r in results}) == 25
        assert app.broker.size("default") == 25

    def test_new_message_takes_send_tasks_options(self, app: Forkq) -> None:
        before = time.time()
        message = app.new_message(
            "t", (1,), {"a": 2}, countdown=30, expires=60, queue="q", priority=4,
            task_id="id1", headers={"h": "v"},
        )  # fmt: skip
        named = (message.id, message.task, message.args, message.kwargs, message.queue)
        assert named == ("id1", "t", [1], {"a": 2}, "q")
        assert (message.priority, message.headers) == (4, {"h": "v"})
        assert before + 30 <= message.eta <= time.time() + 30
        assert before + 60 <= message.expires <= time.time() + 60
        assert app.new_message("t").queue == app.settings.default_queue

    def test_publish_many_delays_each_message_until_its_eta(self, app: Forkq) -> None:
        messages = [app.new_message("t", countdown=30), app.new_message("t2")]
        app.publish_many(messages)
        assert fetch_message(app).task == "t2"
        assert fetch(app) == []  # "t" is not due for 30 s
        assert app.broker.size("default") == 2

    def test_publish_many_refuses_a_delay_no_engine_holds(self, app: Forkq) -> None:
        far = app.new_message("t", countdown=MAX_DELAY * 2)
        with pytest.raises(ConfigurationError, match="cannot be scheduled"):
            app.publish_many([app.new_message("t2"), far])
        assert app.broker.size("default") == 0

    def test_priority_is_brought_into_range_for_the_broker(self, app: Forkq) -> None:
        app.publish_many([app.new_message("low", priority=-3)])
        app.send_task("high", priority=12)
        assert [fetch_message(app).task, fetch_message(app).task] == ["high", "low"]


class TestAsyncResult:
    def test_unknown_id_is_pending(self, app: Forkq) -> None:
        result = app.AsyncResult("nope")
        assert (result.state, result.ready(), result.result) == (PENDING, False, None)

    def test_get_times_out_naming_the_task(self, app: Forkq) -> None:
        with pytest.raises(ResultTimeout, match=r"task abc not ready after 0\.2s") as waited:
            app.AsyncResult("abc").get(timeout=0.2)
        assert isinstance(waited.value, TimeoutError)

    def test_success(self, app: Forkq) -> None:
        app.backend.store("ok", SUCCESS, encode_record(success_record({"a": 1})), 60)
        result = app.AsyncResult("ok")
        assert result.get(timeout=1) == {"a": 1}
        assert result.ready() and result.successful() and result.state == SUCCESS

    def test_failure_raises_or_returns(self, app: Forkq) -> None:
        record = failure_record("ValueError", "bad", "Traceback ...\nValueError: bad")
        app.backend.store("ko", FAILURE, encode_record(record), 60)
        result = app.AsyncResult("ko")
        with pytest.raises(TaskFailed, match="ValueError: bad") as failed:
            result.get(timeout=1)
        assert failed.value.remote_traceback.endswith("ValueError: bad")
        returned = result.get(timeout=1, propagate=False)
        assert isinstance(returned, TaskFailed) and returned.exc_type == "ValueError"
        assert result.ready() and not result.successful()

    def test_forget(self, app: Forkq) -> None:
        app.backend.store("gone", SUCCESS, encode_record(success_record(1)), 60)
        app.AsyncResult("gone").forget()
        assert app.AsyncResult("gone").state == PENDING


class TestRetryPolicy:
    def make(self, app: Forkq, **options: Any) -> Any:
        return app.task(name=f"r{uuid.uuid4().hex}", bind=True, **options)(lambda self: None)

    def test_default_delay(self, app: Forkq) -> None:
        assert self.make(app, default_retry_delay=7).retry_delay(3) == 7

    def test_backoff_doubles_and_caps(self, app: Forkq) -> None:
        t = self.make(app, retry_backoff=2, retry_jitter=False, retry_backoff_max=20)
        assert [t.retry_delay(n) for n in range(5)] == [2, 4, 8, 16, 20]

    def test_jitter_stays_within_the_cap(self, app: Forkq) -> None:
        t = self.make(app, retry_backoff=True)
        delays = [t.retry_delay(3) for _ in range(200)]
        assert all(0 <= d <= 8 for d in delays) and len(set(delays)) > 100

    def test_exhausted_retries_raise_the_cause_or_max_retries(self, app: Forkq) -> None:
        t = self.make(app, max_retries=1)
        t.request = Request(id="x", retries=1)
        with pytest.raises(OSError, match="down"):
            t.retry(exc=OSError("down"))
        with pytest.raises(MaxRetriesExceeded):
            t.retry()
        t.request = Request(id="x", retries=0)
        with pytest.raises(Retry) as raised:
            t.retry(countdown=3)  # raises by itself, as Celery's does
        assert raised.value.countdown == 3
        assert t.retry(countdown=4, throw=False).countdown == 4

    def test_max_retries_none_retries_for_ever(self, app: Forkq) -> None:
        t = self.make(app, max_retries=None)
        t.request = Request(id="x", retries=10_000)
        assert t.retry(countdown=1, throw=False).countdown == 1

    def test_autoretry_for_and_its_exceptions(self, app: Forkq) -> None:
        t = self.make(
            app,
            autoretry_for=(OSError,),
            dont_autoretry_for=[FileNotFoundError],
            retry_kwargs={"countdown": 5, "max_retries": 2},
        )
        retry = t.autoretry(ConnectionError("reset"))
        assert retry is not None and retry.countdown == 5
        assert t.autoretry(FileNotFoundError("gone")) is None  # excepted
        assert t.autoretry(KeyError("k")) is None  # not listed
        t.request = Request(id="x", retries=2)
        assert t.autoretry(ConnectionError("reset")) is None  # retry_kwargs' max_retries

    def test_autoretry_backoff_wins_over_a_countdown(self, app: Forkq) -> None:
        t = self.make(
            app,
            autoretry_for=OSError,
            retry_backoff=3,
            retry_jitter=False,
            retry_kwargs={"countdown": 100},
        )
        t.request = Request(id="x", retries=2)
        retry = t.autoretry(OSError())
        assert retry is not None and retry.countdown == 12

    @pytest.mark.parametrize(
        "options, complaint",
        [
            ({"autoretry_for": (OSError, "ValueError")}, "exception classes, not 'ValueError'"),
            ({"dont_autoretry_for": int}, "exception classes, not <class 'int'>"),
            ({"retry_kwargs": {"delay": 1}}, "countdown, eta, max_retries, not delay"),
        ],
    )
    def test_bad_retry_options_name_the_task(
        self, app: Forkq, options: dict[str, Any], complaint: str
    ) -> None:
        with pytest.raises(ConfigurationError, match="task bad: ") as raised:
            app.task(name="bad", **options)(lambda: None)
        assert complaint in str(raised.value)


@pytest.mark.timeout(30)
def test_a_forked_child_opens_its_own_connection(tmp_path: Any) -> None:
    app = Forkq("proj", broker=f"sqlite:///{tmp_path}/q.sqlite3")
    parents = app.broker
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        ok = app.broker is not parents and app._owner_pid == os.getpid()
        app.send_task("from.child")
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        assert pipe.read() == b"1"
    assert os.waitpid(pid, 0)[1] == 0
    assert app.broker is parents  # the parent's is untouched and still works
    assert app.broker.size("default") == 1


def test_get_rides_out_a_backend_outage_until_its_deadline() -> None:
    from forkq.exceptions import BackendError, BackendUnavailable

    app = Forkq("t", broker=f"memory://{uuid.uuid4().hex}")
    backend = app.backend
    backend.store("t-1", "SUCCESS", encode_record(success_record(5)), 60)
    real_wait, failures = backend.wait, []

    def wait(task_id: str, timeout: float) -> Any:
        if len(failures) < 2:  # the server restarts: two failed attempts, then it answers
            failures.append(task_id)
            raise BackendUnavailable("connection refused")
        return real_wait(task_id, timeout)

    backend.wait = wait  # type: ignore[method-assign]
    assert app.AsyncResult("t-1").get(timeout=10) == 5
    assert len(failures) == 2

    def down(task_id: str, timeout: float) -> Any:
        raise BackendUnavailable("down")

    backend.wait = down  # type: ignore[method-assign]
    started = time.monotonic()
    with pytest.raises(BackendError):  # still down at the deadline: the error, not a hang
        app.AsyncResult("t-1").get(timeout=0.5)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://guest:s3cret@host:5672/%2F?prefix=p", "amqp://guest:***@host:5672/%2F?prefix=p"),
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://host:6379/0", "redis://host:6379/0"),
    ],
)
def test_urls_in_logs_and_errors_never_show_the_password(url: str, shown: str) -> None:
    from forkq.engines.registry import open_broker
    from forkq.settings import redacted

    assert redacted(url) == shown
    with pytest.raises(ConfigurationError) as error:
        open_broker(url.replace("://", "x://", 1))  # an unknown scheme, named in the error
    assert "s3cret" not in str(error.value)


def test_a_task_may_keep_its_own_attributes_on_its_request() -> None:
    from forkq.task import Request

    request = Request("id-1")
    request.attempt_note = "second try"  # type: ignore[attr-defined]
    assert (request.id, request.attempt_note) == ("id-1", "second try")  # type: ignore[attr-defined]


@pytest.mark.parametrize("ttl", ["inf", "nan", "-1", "0", "1e9"])
def test_a_lease_ttl_no_engine_can_keep_is_refused(ttl: str) -> None:
    # An infinite or NaN lease read as "no lease" on SQLite: live holds were taken back.
    with pytest.raises(ConfigurationError, match="lease_ttl"):
        lease_ttl_from_url(f"memory://{uuid.uuid4().hex}?lease_ttl={ttl}")


@pytest.mark.parametrize("countdown", [1e12, float("inf")])
def test_a_delay_no_engine_can_hold_is_refused_before_sending(countdown: float) -> None:
    app = Forkq("t", broker=f"memory://{uuid.uuid4().hex}")
    add = app.task(name="add")(lambda x, y: x + y)
    with pytest.raises(ConfigurationError, match="cannot be scheduled"):
        add.apply_async((1, 2), countdown=countdown)
    assert app.broker.size(app.settings.default_queue) == 0
