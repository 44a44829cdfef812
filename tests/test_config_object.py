"""`app.config_from_object`: settings kept in a module, with forkq's or Celery's names."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from forkq import ConfigurationError, Forkq
from forkq.exceptions import ForkqWarning


@pytest.fixture
def app() -> Forkq:
    return Forkq("proj", broker=f"memory://{uuid.uuid4().hex}")


def test_a_settings_module_by_dotted_name(
    app: Forkq, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / f"cfg_{uuid.uuid4().hex}"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(
        "import os\n"  # a module, not a setting
        "from datetime import timedelta\n"  # a class, not a setting
        "DEBUG = True\n"  # upper case, and no forkq or Celery name: not a setting
        "broker_url = 'memory://from-module'\n"
        "task_default_queue = 'work'\n"
        "task_ignore_result = True\n"
        "task_track_started = True\n"
        "result_expires = timedelta(hours=2)\n"
        "task_serializer = 'json'\n"
        "task_acks_late = True\n"
        "class Config:\n"
        "    default_queue = 'other'\n"
        "    max_deliveries = 5\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FORKQ_DEFAULT_QUEUE", "from-env")
    app.config_from_object(f"{package.name}.settings")
    s = app.settings
    assert (s.broker_url, s.default_queue, s.ignore_result, s.track_started, s.result_ttl) == (
        "memory://from-module",
        "work",
        True,
        True,
        7200.0,
    )
    app.config_from_object(f"{package.name}.settings:Config")
    assert (app.settings.default_queue, app.settings.max_deliveries) == ("other", 5)
    app.config_from_object(f"{package.name}.settings.Config")
    with pytest.raises(ConfigurationError, match="config_from_object"):
        app.config_from_object(f"{package.name}.missing")


def test_a_namespace_reads_prefixed_upper_case_names(app: Forkq) -> None:
    django_like = {"DEBUG": True, "CELERY_BROKER_URL": "memory://dj", "CELERY_RESULT_EXPIRES": 60}
    app.config_from_object(django_like, namespace="CELERY")
    assert (app.settings.broker_url, app.settings.result_ttl) == ("memory://dj", 60.0)


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"brokr_url": "x"}, "unknown setting brokr_url in dict; forkq's settings: broker_url"),
        ({"BROKER_URL": "x"}, "BROKER_URL: forkq reads lowercase names, .*broker_url"),
        ({"CELERY_RESULT_BACKEND": "x"}, "CELERY_RESULT_BACKEND: .*namespace"),
        ({"task_serializer": "pickle"}, "task_serializer='pickle' is not supported: .*JSON"),
        ({"task_acks_late": False}, "task_acks_late=False is not supported"),
        ({"task_routes": {"a": "b"}}, "task_routes is not supported: forkq has no router"),
        ({"result_ttl": "soon"}, "result_ttl='soon': Expected `float`, got `str`"),
        ({"ignore_result": 1}, "ignore_result=1: Expected `bool`"),
        ({"result_expires": -1}, "result_ttl must be > 0"),
        ({"task_eager_propagates": "yes"}, "task_eager_propagates='yes' is not supported"),
    ],
)
def test_what_is_refused_is_named(app: Forkq, settings: dict[str, Any], error: str) -> None:
    before = app.settings
    with pytest.raises(ConfigurationError, match=error):
        app.config_from_object(settings)
    assert app.settings == before  # nothing applied


@pytest.mark.parametrize("propagates", [True, False])
def test_celerys_eager_test_settings_are_read(app: Forkq, propagates: bool) -> None:
    app.config_from_object({"task_always_eager": True, "task_eager_propagates": propagates})
    assert app.settings.eager

    @app.task
    def explode() -> None:
        raise KeyError("missing")

    result = explode.delay()  # as from a worker: the call returns, get() raises
    with pytest.raises(KeyError):
        result.get(timeout=0)
    assert isinstance(result.get(timeout=0, propagate=False), KeyError)


def test_celery_tuning_forkq_sets_elsewhere_warns(app: Forkq) -> None:
    class Config:
        worker_prefetch_multiplier = 1
        result_expires = timedelta(minutes=1)

    with pytest.warns(ForkqWarning, match="worker_prefetch_multiplier ignored: .*--prefetch"):
        app.config_from_object(Config)
    assert app.settings.result_ttl == 60.0
