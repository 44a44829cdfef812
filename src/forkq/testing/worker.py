"""A real `forkq worker` subprocess for one test: started, awaited, stopped.

It logs at `info` at least, whatever level its options ask for (`with_ready_line`), and runs in
a session of its own, so stopping it (TERM, then KILL after `STOP_TIMEOUT`) reaches
its master and children and nothing else. Its output goes to a file, never to a pipe that
nobody would read while the test runs. It is serving once a child logs that it is ready: the
fixture waits for that line on inotify events of the file and for the worker's exit on a
pidfd, with no polling and a deadline, `START_TIMEOUT`.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from inotify_simple import INotify, flags

from forkq.app import Forkq

START_TIMEOUT = 30.0  # seconds for the worker to import the app and boot a child
STOP_TIMEOUT = 10.0  # seconds for a warm shutdown before the worker is killed
READY = " ready (pid "  # what a child logs at `info` once it takes work (worker/consume.py)
LEVEL_OPTIONS = ("-l", "--loglevel")


class RunningWorker:
    """A started worker: `pid`, `url` (its broker and results), `log()` (its output so far)."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
        self.proc = proc
        self.url = url
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @classmethod
    def start(cls, spec: str, url: str, args: list[str], directory: Path) -> RunningWorker:
        log_path = directory / "forkq-worker.log"
        command = [sys.executable, "-m", "forkq", "--broker", url, "--backend", url]
        command += ["worker", "-A", spec, *with_ready_line(args)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        env.pop("FORKQ_EAGER", None)
        with log_path.open("wb") as output:
            proc = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        worker = cls(proc, url, log_path)
        try:
            worker._wait_until_ready(START_TIMEOUT)
        except BaseException:
            worker.stop()
            raise
        return worker

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pidfd = os.pidfd_open(self.pid)
        try:
            with INotify() as inotify:
                inotify.add_watch(self.log_path, flags.MODIFY)
                while READY not in self.log():
                    if self.proc.poll() is not None:
                        pytest.fail(self._failure(f"exited with code {self.proc.returncode}"))
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        pytest.fail(self._failure(f"was not serving after {timeout:g}s"))
                    select.select([inotify, pidfd], [], [], remaining)
                    inotify.read(timeout=0)
        finally:
            os.close(pidfd)

    def _failure(self, what: str) -> str:
        return f"forkq worker (pid {self.pid}) {what}; its output:\n{self.log()}"

    def stop(self) -> None:
        """Warm shutdown; killed, with everything it started, if that takes too long."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # whatever of its group is left
        self.proc.wait(timeout=STOP_TIMEOUT)


def with_ready_line(args: list[str]) -> list[str]:
    """The worker's options as given, at a log level that shows the line the fixture waits
    for: `info`, or `debug` when that is asked for (it shows more). `--logfile` is refused:
    the fixture reads the worker's output."""
    kept, level = [], "info"
    given = iter(args)
    for arg in given:
        name, equals, value = arg.partition("=")
        if name == "--logfile":
            pytest.fail(
                "forkq_worker_args: --logfile is not supported: the forkq_worker fixture reads "
                "the worker's output (shown when a test fails)",
                pytrace=False,
            )
        if name in LEVEL_OPTIONS:
            value = value if equals else next(given, "")
        elif arg.startswith("-l") and not arg.startswith("--"):
            value = arg[2:]  # -lwarning
        else:
            kept.append(arg)
            continue
        if value.lower() == "debug":
            level = "debug"
    return [*kept, "-l", level]


def app_spec(app: Forkq) -> str:
    """`module:attribute` for the worker's `-A`: a module that holds the app, preferring one
    that defines its tasks (so that importing it registers them)."""
    found = [
        (name, attribute)
        for name, module in list(sys.modules.items())
        if name != "__main__" and module is not None
        for attribute, value in list(vars(module).items())
        if value is app
    ]
    own = {task.fn.__module__ for task in app.tasks.values()}
    best = [spot for spot in found if spot[0] in own] or found
    if not best:
        pytest.fail(
            f"no imported module holds the app {app!r}: override the `forkq_app_spec` fixture "
            "to return the worker's -A (module:attribute)",
            pytrace=False,
        )
    return "{}:{}".format(*min(best))
