"""Finding the app (`-A`), `include=` and `autodiscover_tasks`, and the worker banner."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from forkq import Forkq, TaskFailed
from forkq.calling import unknown_task
from forkq.exceptions import MAX_REASON
from forkq.worker.loader import AppLoadError, load_app
from tests.commands import forkq
from tests.conftest import WorkerProcess

pytestmark = pytest.mark.timeout(60)

Layout = Callable[[dict[str, str]], str]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Layout]:
    """Writes a package of a unique name (files relative to it, `{p}` standing for its name)
    in the current directory, where `-A` looks; yields the writer, which returns the name."""
    names: list[str] = []
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # restores sys.path, load_app's entry included

    def write(files: dict[str, str]) -> str:
        name = f"proj_{uuid.uuid4().hex[:8]}"
        names.append(name)
        for relative, text in {"__init__.py": "", **files}.items():
            path = tmp_path / name / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).replace("{p}", name))
        return name

    yield write
    for module in [m for m in sys.modules if m.split(".")[0] in names]:
        del sys.modules[module]


CELERY_LAYOUT = {
    "celery.py": """
        from forkq import Forkq
        app = Forkq("{p}", include=["{p}.tasks"])
    """,
    "tasks.py": """
        from {p}.celery import app

        @app.task
        def add(x, y):
            return x + y

        @app.task
        def boom():
            raise ValueError("boom goes the task")
    """,
}


def test_a_package_finds_its_app_in_a_celery_module_and_imports_the_included_tasks(
    project: Layout,
) -> None:
    p = project(CELERY_LAYOUT)
    app = load_app(p)
    assert app.main == p
    assert sorted(app.tasks) == [f"{p}.tasks.add", f"{p}.tasks.boom"]


def test_the_search_says_what_it_tried(project: Layout) -> None:
    p = project({"app.py": "X = 1\n"})
    with pytest.raises(AppLoadError) as failed:
        load_app(p)
    assert str(failed.value) == (
        f"no Forkq app in {p}, {p}.app ({p}.forkq, {p}.celery, {p}.tasks: no such module); "
        "give the module that makes it: -A MODULE[:ATTRIBUTE]"
    )


def test_an_import_error_inside_a_module_is_not_reported_as_a_missing_module(
    project: Layout,
) -> None:
    p = project({"celery.py": "import no_such_dependency_here\n"})
    with pytest.raises(AppLoadError) as failed:
        load_app(p)
    message = str(failed.value)
    assert message.startswith(f"importing '{p}.celery' raised ModuleNotFoundError:")
    assert "no_such_dependency_here" in message and "celery.py, line 1)" in message


def test_one_app_under_two_names_is_one_app_and_app_wins_among_several(project: Layout) -> None:
    p = project({"celery.py": "from forkq import Forkq\napp = Forkq('a')\ncelery_app = app\n"})
    assert load_app(p).main == "a"
    q = project({"tasks.py": "from forkq import Forkq\nother = Forkq('o')\napp = Forkq('a')\n"})
    assert load_app(f"{q}.tasks").main == "a"
    r = project({"two.py": "from forkq import Forkq\none = Forkq('1')\ntwo = Forkq('2')\n"})
    with pytest.raises(AppLoadError, match=r"has 2 Forkq apps \(one, two\); name one with -A"):
        load_app(f"{r}.two")


def test_autodiscover_imports_each_packages_tasks_and_skips_packages_without(
    project: Layout,
) -> None:
    p = project(
        {
            "celery.py": """
                from forkq import Forkq
                app = Forkq("{p}")
                app.autodiscover_tasks(["{p}.billing", "{p}.no_tasks_here"])
                app.autodiscover_tasks("{p}.mail", related_name="jobs")
            """,
            "mail/__init__.py": "",
            "mail/jobs.py": "from {p}.celery import app\n@app.task\ndef send(): ...\n",
            "billing/__init__.py": "",
            "billing/tasks.py": "from {p}.celery import app\n@app.task\ndef charge(): ...\n",
            "no_tasks_here/__init__.py": "",
        }
    )
    assert list(load_app(p).tasks) == [f"{p}.billing.tasks.charge", f"{p}.mail.jobs.send"]


def test_autodiscover_waits_for_the_loader_unless_forced(project: Layout) -> None:
    p = project({"tasks.py": ""})
    app = Forkq("x")
    app.autodiscover_tasks([p])
    assert f"{p}.tasks" not in sys.modules  # the app's module may still be running
    app.autodiscover_tasks([p], force=True)
    assert f"{p}.tasks" in sys.modules


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"broken/__init__.py": "", "broken/tasks.py": "\n\nundefined_name\n"},
            "autodiscover_tasks: importing '{p}.broken.tasks' raised NameError: name "
            "'undefined_name' is not defined (",
        ),
        ({}, "autodiscover_tasks: no module named '{p}.broken'"),
    ],
)
def test_autodiscover_names_the_module_that_fails(
    project: Layout, files: dict[str, str], expected: str
) -> None:
    app_module = (
        'from forkq import Forkq\napp = Forkq("x")\napp.autodiscover_tasks(["{p}.broken"])\n'
    )
    p = project({"app.py": app_module, **files})
    with pytest.raises(AppLoadError) as failed:
        load_app(p)
    assert str(failed.value).startswith(expected.replace("{p}", p))
    if files:
        assert str(failed.value).endswith("tasks.py, line 3)")


def test_include_takes_one_name_as_a_string_and_a_missing_module_is_an_error(
    project: Layout,
) -> None:
    p = project({"tasks.py": "from {p} import app\n\n@app.task\ndef t():\n    pass\n"})
    (Path(p) / "__init__.py").write_text(
        f"from forkq import Forkq\napp = Forkq('x', include='{p}.tasks')\n"
    )
    assert list(load_app(p).tasks) == [f"{p}.tasks.t"]
    q = project(
        {"__init__.py": "from forkq import Forkq\napp = Forkq('x', include=['{p}.nope'])\n"}
    )
    with pytest.raises(AppLoadError, match=f"^include: no module named '{q}.nope'$"):
        load_app(q)


def test_an_unknown_task_reason_names_a_few_tasks_and_fits_the_cap() -> None:
    assert unknown_task("x", {}) == (
        "unknown task 'x': this worker has no tasks (see its start-up warning)"
    )
    assert unknown_task("x", {"b", "a"}) == "unknown task 'x'; this worker has a, b"
    many = {f"proj.tasks.t{i:03}" for i in range(300)}
    reason = unknown_task("proj.tsks.t001", many)
    assert reason.startswith("unknown task 'proj.tsks.t001'; this worker has proj.tasks.t000, ")
    assert reason.endswith(" and 290 more")
    long_names = unknown_task("n" * 300, {"a" * 3000, "b" * 3000, "c"})
    assert len(long_names) < MAX_REASON - 40 and long_names.endswith(" and 2 more")
    assert unknown_task("x" * 3000, {"a"}) == f"unknown task '{'x' * 3000}'"  # cut by the cap


# -- a real worker, on the default SQLite URL, started as a Celery user would -------------------


def test_a_celery_layout_runs_with_minus_a_package_on_the_default_broker(
    tmp_path: Path,
) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "__init__.py").write_text("")
    for name, text in CELERY_LAYOUT.items():
        (tmp_path / "proj" / name).write_text(textwrap.dedent(text).replace("{p}", "proj"))
    default = "sqlite:///forkq.sqlite3"  # relative: the file in the worker's directory
    # WorkerProcess starts `-A e2eapp ARGS`; click keeps an option's last value: -A proj.
    worker = WorkerProcess(tmp_path, default, "-A", "proj", "-c", "1", "-l", "info")
    client = Forkq("client", broker=f"sqlite:///{tmp_path}/forkq.sqlite3")
    try:
        worker.wait_for_log("    . proj.tasks.boom")
        banner = worker.log()
        assert f"  broker:      sqlite:///{tmp_path}/forkq.sqlite3\n" in banner
        assert "  tasks (2):\n" in banner and "    . proj.tasks.add\n" in banner
        assert "has no tasks" not in banner

        assert client.send_task("proj.tasks.add", (2, 3)).get(timeout=30) == 5
        with pytest.raises(
            TaskFailed, match=r"this worker has proj\.tasks\.add, proj\.tasks\.boom$"
        ):
            client.send_task("proj.tasks.ad", (2, 3)).get(timeout=30)
        failed = client.send_task("proj.tasks.boom")
        with pytest.raises(TaskFailed):
            failed.get(timeout=30)
    finally:
        worker.stop()
        client.close()

    shown = forkq(tmp_path, "-A", "proj", "result", failed.id)
    assert '"type": "ValueError"' in shown.stdout and '"traceback": "Traceback' in shown.stdout
    assert shown.stderr.startswith(f"forkq: results sqlite:///{tmp_path}/forkq.sqlite3\n")
    assert "ValueError: boom goes the task" in shown.stderr  # the traceback, readable

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    queued = forkq(elsewhere, "call", "proj.tasks.add", "1", "2")
    assert queued.stderr == f"forkq: broker sqlite:///{elsewhere}/forkq.sqlite3\n"


def test_a_worker_without_tasks_warns_and_its_dead_letters_say_why(
    tmp_path: Path, sqlite_url: str
) -> None:
    (tmp_path / "e2eapp.py").write_text("from forkq import Forkq\napp = Forkq('bare')\n")
    worker = WorkerProcess(tmp_path, sqlite_url, "-c", "1", "-l", "warning")
    client = Forkq("client", broker=sqlite_url)
    try:
        worker.wait_for_log("WARNING forkq.worker: app bare has no tasks: every message")
        assert "include=['bare.tasks']" in worker.log()
        with pytest.raises(TaskFailed, match="this worker has no tasks"):
            client.send_task("bare.add", (1, 2)).get(timeout=30)
    finally:
        worker.stop()
        client.close()
