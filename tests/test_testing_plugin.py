"""forkq's pytest plugin (`forkq.testing`): cheap to load, inert until asked, and fixtures
that put back what they changed and stop what they started."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

APP = textwrap.dedent(
    """
    from datetime import datetime

    from forkq import Forkq

    app = Forkq("plugged")

    @app.task
    def add(x, y):
        return x + y

    @app.task
    def fail():
        raise LookupError("nothing here")

    @app.task
    def typed(when: "datetime", who: "NotImportedHere"):  # one resolves, one cannot
        return when

    @app.task
    def converted_before_fork():
        return "conversion" in vars(typed)  # never sent typed: not worked out in this child
    """
)


def run_pytest(directory: Path, tests: str, conftest: str = "") -> subprocess.CompletedProcess[str]:
    (directory / "plugged.py").write_text(APP)
    (directory / "conftest.py").write_text(textwrap.dedent(conftest))
    (directory / "test_it.py").write_text(textwrap.dedent(tests))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(directory)],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=100,
    )


APP_FIXTURE = """
    import pytest

    @pytest.fixture
    def forkq_app():
        from plugged import app
        return app
    """


def test_the_plugin_is_registered_and_loads_nothing_of_forkqs_machinery() -> None:
    [entry] = [e for e in metadata.entry_points(group="pytest11") if e.name == "forkq"]
    assert entry.value == "forkq.testing"
    code = (
        "import sys, forkq.testing\n"
        "heavy = {'msgspec', 'forkq.app', 'forkq.engines', 'redis', 'pika', 'inotify_simple'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "[]", done.stderr


@pytest.mark.timeout(120)
def test_eager_fixture_switches_the_app_for_one_test_only(tmp_path: Path) -> None:
    done = run_pytest(
        tmp_path,
        """
        from plugged import add, app

        def test_eager(forkq_eager_app):
            assert forkq_eager_app is app
            assert add.delay(2, 3).get(timeout=0) == 5

        def test_after(tmp_path):
            assert app.settings.eager is False
            assert app.settings.broker_url == "sqlite:///forkq.sqlite3"
        """,
        APP_FIXTURE,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


@pytest.mark.timeout(120)
def test_worker_fixture_serves_the_test_then_stops(tmp_path: Path) -> None:
    done = run_pytest(
        tmp_path,
        """
        import pytest
        from forkq import TaskFailed
        from plugged import add, app, converted_before_fork, fail

        def test_on_a_worker(forkq_worker):
            assert app.settings.broker_url == forkq_worker.url
            assert add.delay(2, 3).get(timeout=30) == 5
            assert converted_before_fork.delay().get(timeout=30) is True
            with pytest.raises(TaskFailed):
                fail.delay().get(timeout=30)
            print("WORKER", forkq_worker.pid)

        def test_after():
            assert app.settings.broker_url == "sqlite:///forkq.sqlite3"
        """,
        APP_FIXTURE,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    pid = int(done.stdout.split("WORKER ")[1].split()[0])
    assert not Path(f"/proc/{pid}").exists()  # stopped (and reaped) by the fixture
    assert f"master {pid} exiting with code 0" in done.stdout  # a warm shutdown
    # worked out once, in the master, before the children: logged once, though never sent
    assert done.stdout.count("task plugged.typed: argument 'who' not converted") == 1
    assert not (tmp_path / "forkq.sqlite3").exists()
    # A failure, relayed by the master: at ERROR, with the task's frames and none of forkq's.
    logged = done.stdout.split("ERROR forkq.worker: task plugged.fail[")[1].split("\n[")[0]
    assert "raised LookupError: nothing here\nTraceback (most recent call last):" in logged
    assert 'plugged.py", line 14, in fail' in logged and "forkq/" not in logged


@pytest.mark.timeout(120)
def test_worker_fixture_is_ready_whatever_log_level_the_args_ask_for(tmp_path: Path) -> None:
    done = run_pytest(
        tmp_path,
        """
        import pytest
        from plugged import add

        @pytest.fixture
        def forkq_worker_args():
            return ["-c", "1", "-l", "warning"]

        def test_on_a_worker(forkq_worker):
            assert add.delay(2, 3).get(timeout=30) == 5

        class TestLogfile:
            @pytest.fixture
            def forkq_worker_args(self):
                return ["--logfile", "x.log"]

            def test_refused(self, forkq_worker):
                pass
        """,
        APP_FIXTURE,
    )
    assert "1 passed, 1 error" in done.stdout, done.stdout + done.stderr
    assert "not serving after" not in done.stdout
    assert "--logfile is not supported: the forkq_worker fixture reads" in done.stdout


@pytest.mark.timeout(120)
def test_a_worker_that_cannot_start_fails_the_test_at_once_with_its_output(
    tmp_path: Path,
) -> None:
    done = run_pytest(
        tmp_path,
        """
        def test_on_a_worker(forkq_worker):
            pass
        """,
        APP_FIXTURE
        + """
    @pytest.fixture
    def forkq_app_spec():
        return "no_such_module:app"
    """,
    )
    assert done.returncode == 1
    assert "exited with code 3" in done.stdout and "no_such_module" in done.stdout
    assert "not serving after" not in done.stdout  # it did not wait for the deadline


def test_without_an_app_fixture_the_failure_says_what_to_define(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, "def test_it(forkq_eager_app):\n    pass\n")
    assert done.returncode == 1
    assert "define a fixture `forkq_app` in conftest.py" in done.stdout
