"""The control directory and sockets belong to the user alone: an unsafe directory is refused
in one line by the worker and by `forkq inspect`, and a socket served by another user is
neither believed by inspect nor answered by a worker.

The tests run as root; "another user" is uid 65534 (nobody): a directory or socket chowned to
it, or a forked process that drops to it."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from forkq import Forkq, exitcodes
from forkq.pool import control_dir
from forkq.pool.control_dir import open_inspect_dirs, worker_dir_path
from tests.conftest import wait_until_serving

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(os.getuid() != 0, reason="plays another user: needs root"),
]
NOBODY = 65534


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORKQ_CONTROL_DIR", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)


def forkq(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forkq", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **env},
    )


def foreign_dir(path: Path) -> Path:
    path.mkdir(mode=0o700)
    os.chown(path, NOBODY, NOBODY)
    return path


def symlink_to_foreign(tmp: Path) -> Path:
    link = tmp / "control"
    link.symlink_to(foreign_dir(tmp / "theirs"))
    return link


def open_dir(mode: int) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / "control"
        path.mkdir()
        path.chmod(mode)
        return path

    return make


UNSAFE = {
    "symlink": (symlink_to_foreign, "is a symbolic link"),
    "group-writable": (open_dir(0o770), "has mode 0770, not 0700"),
    "world-writable": (open_dir(0o777), "has mode 0777, not 0700"),
    "another owner": (lambda tmp: foreign_dir(tmp / "control"), "belongs to uid 65534"),
}


@pytest.mark.parametrize("kind", UNSAFE)
@pytest.mark.parametrize("command", ["worker", "inspect"])
def test_an_unsafe_control_dir_is_refused_in_one_line(
    kind: str, command: str, tmp_path: Path, e2e_dir: Path, broker_url: str
) -> None:
    make, wanted = UNSAFE[kind]
    path = make(tmp_path)
    args = ("worker", "-A", "e2eapp", "-c", "1") if command == "worker" else ("inspect", "ping")
    done = forkq(*args, cwd=e2e_dir, FORKQ_CONTROL_DIR=str(path), FORKQ_BROKER_URL=broker_url)
    assert done.returncode == exitcodes.USAGE, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"forkq: error: control directory {path} {wanted}")
    assert "FORKQ_CONTROL_DIR" in line  # how to fix it
    assert done.stdout == ""


def test_xdg_runtime_dir_is_preferred(
    client: Forkq, start_worker: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))  # inherited by the worker and the CLI
    worker = start_worker("-c", "1")
    wait_until_serving(client, worker)
    made = runtime / "forkq"
    assert stat.S_IMODE(made.lstat().st_mode) == 0o700
    assert stat.S_ISSOCK((made / f"{worker.pid}.sock").lstat().st_mode)
    pong = forkq("inspect", "ping", "--json")  # also reads /tmp/forkq-<uid>: others may be there
    assert worker.pid in [r["pid"] for r in json.loads(pong.stdout)["replies"].values()], (
        pong.stderr
    )


@pytest.mark.parametrize("unsafe", ["relative", "mode 0755", "symlink", "another owner"])
def test_an_unsafe_xdg_runtime_dir_is_passed_over(
    unsafe: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    value = str(runtime)
    if unsafe == "relative":
        value = "run"
        monkeypatch.chdir(tmp_path)
    elif unsafe == "mode 0755":
        runtime.chmod(0o755)
    elif unsafe == "symlink":
        value = str(tmp_path / "link")
        os.symlink(runtime, value)
    else:
        os.chown(runtime, NOBODY, NOBODY)
    monkeypatch.setenv("XDG_RUNTIME_DIR", value)
    assert worker_dir_path() == Path(f"/tmp/forkq-{os.getuid()}")
    monkeypatch.setenv("FORKQ_CONTROL_DIR", str(tmp_path / "mine"))
    assert worker_dir_path() == tmp_path / "mine"  # the setting wins over both


def test_inspect_in_an_xdg_session_also_reads_tmp_and_skips_it_if_unsafe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "run"
    (runtime / "forkq").mkdir(mode=0o700, parents=True)
    runtime.chmod(0o700)
    tmp_dir = tmp_path / "tmp-forkq"  # stands for /tmp/forkq-<uid>: workers of system services
    tmp_dir.mkdir(mode=0o700)
    monkeypatch.setattr(control_dir, "shared_tmp_dir", lambda: tmp_dir)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    dirs, skipped = open_inspect_dirs()
    assert ([d.path for d in dirs], skipped) == ([runtime / "forkq", tmp_dir], [])
    for d in dirs:
        d.close()
    os.chown(tmp_dir, NOBODY, NOBODY)  # another user made it first: inspect still works
    dirs, [warning] = open_inspect_dirs()
    assert [d.path for d in dirs] == [runtime / "forkq"]
    assert f"{tmp_dir} belongs to uid 65534" in warning
    dirs[0].close()


@contextlib.contextmanager
def planted_server(directory: Path) -> Iterator[int]:
    """A process that binds `<its pid>.sock` in `directory`, then becomes uid 65534 and
    answers every request as a worker would, with the title "planted". Yields its pid."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the planted server
        try:
            os.close(ready_r)
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(str(directory / f"{os.getpid()}.sock"))
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            server.listen(8)  # a listener's SO_PEERCRED is its credentials now: uid 65534
            os.write(ready_w, b"r")
            reply = {"pong": True, "pid": os.getpid(), "title": "planted"}
            while True:
                conn, _ = server.accept()
                with conn, contextlib.suppress(OSError):  # a client that hung up
                    conn.recv(4096)
                    conn.sendall(json.dumps(reply).encode() + b"\n")
        finally:
            os._exit(1)
    os.close(ready_w)
    try:
        assert select.select([ready_r], [], [], 10)[0], "the planted server did not start"
        assert os.read(ready_r, 1) == b"r"
        yield pid
    finally:
        os.close(ready_r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


@pytest.mark.parametrize("file_owner", [NOBODY, 0], ids=["file of uid 65534", "file of ours"])
def test_inspect_ignores_a_socket_served_by_another_user(
    file_owner: int,
    client: Forkq,
    start_worker: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    control = tmp_path / "control"
    control.mkdir(mode=0o700)
    monkeypatch.setenv("FORKQ_CONTROL_DIR", str(control))
    worker = start_worker("-c", "1")
    wait_until_serving(client, worker)
    with planted_server(control) as planted:
        # A socket file of ours served by uid 65534 passes the owner check: only the peer's
        # credentials tell it apart.
        os.chown(control / f"{planted}.sock", file_owner, file_owner)
        done = forkq("inspect", "ping", "--json")
        assert [r["title"] for r in json.loads(done.stdout)["replies"].values()] == ["forkq: e2e"]
        [warning] = done.stderr.splitlines()
        assert warning.startswith(f"forkq: warning: not trusting {control}/{planted}.sock: ")
        assert "uid 65534" in warning
        asked = forkq("inspect", "ping", "--pid", str(planted))
        assert asked.returncode == exitcodes.USAGE
        [error] = asked.stderr.splitlines()
        assert error.startswith("forkq: error: ") and "uid 65534" in error
        assert "planted" not in asked.stdout


def test_a_worker_answers_no_other_user(
    client: Forkq, start_worker: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    control = tmp_path / "control"
    monkeypatch.setenv("FORKQ_CONTROL_DIR", str(control))
    worker = start_worker("-c", "1")
    wait_until_serving(client, worker)
    # Another user cannot reach the socket through its directory; give them a way in (a hard
    # link where they can reach it, connectable by anyone), as a mistake would.
    door = Path("/tmp") / f"forkq-test-door-{os.getpid()}-{worker.pid}"
    foreign_dir(door)
    try:
        os.link(control / f"{worker.pid}.sock", door / "worker.sock")
        (door / "worker.sock").chmod(0o777)
        assert ask_as(NOBODY, door / "worker.sock") == b""
        worker.wait_for_log("control socket: refused a connection from uid 65534")
        assert ask_as(0, door / "worker.sock").startswith(b'{"pong": true')  # the door works
    finally:
        (door / "worker.sock").unlink(missing_ok=True)
        door.rmdir()


def ask_as(uid: int, path: Path) -> bytes:
    """Send `ping` to the socket at `path` from a process of `uid`; what came back."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the asking process
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(10)
                conn.connect(str(path))
                conn.sendall(b'{"command": "ping"}\n')
                reply = b""
                while chunk := conn.recv(65536):
                    reply += chunk
            os.write(w, reply)
        finally:
            os._exit(0)
    os.close(w)
    try:
        reply = b""
        while select.select([r], [], [], 20)[0] and (chunk := os.read(r, 65536)):
            reply += chunk
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return reply
