"""`forkq dashboard` as a command: its refusals are one line with status 2, it stops at
once on SIGTERM even with a browser's stream open, and a wheel carries its templates and
static files."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.conftest import server_port
from tests.dashboard.browser import DashboardProcess

ROOT = Path(__file__).resolve().parents[2]


def forkq(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forkq", *args], cwd=cwd, capture_output=True, text=True,
        timeout=30,
    )  # fmt: skip


@pytest.mark.timeout(60)
def test_a_non_loopback_host_without_auth_is_one_line_and_status_2(tmp_path: Path) -> None:
    done = forkq("dashboard", "--host", "0.0.0.0", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--auth" in done.stderr
    assert done.stderr.startswith("forkq: error: --host 0.0.0.0 lets other machines in")


@pytest.mark.timeout(60)
def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        done = forkq("dashboard", "--broker", f"sqlite:///{tmp_path}/x.db", "--port", port,
                     cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


@pytest.mark.timeout(60)
def test_rabbitmq_without_an_event_store_is_one_line(tmp_path: Path) -> None:
    done = forkq("dashboard", "--broker", "amqp://guest:guest@127.0.0.1:5672/%2F", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "no event store" in done.stderr and "events_url" in done.stderr


@pytest.mark.timeout(60)
def test_sigterm_stops_it_with_a_stream_open(e2e_dir: Path, sqlite_url: str) -> None:
    dash = DashboardProcess(e2e_dir, sqlite_url, server_port())
    try:
        with urllib.request.urlopen(dash.url("/stream/overview"), timeout=10) as stream:
            assert stream.readline().startswith(b"data: {")
            dash.signal(signal.SIGTERM)
            assert dash.wait(timeout=10) in (0, -signal.SIGTERM)
    finally:
        dash.stop()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_wheel_carries_the_templates_and_static_files(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, timeout=240, capture_output=True,
    )  # fmt: skip
    [wheel] = tmp_path.glob("forkq-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        f"forkq/dashboard/{p.relative_to(ROOT / 'src/forkq/dashboard')}"
        for p in (ROOT / "src/forkq/dashboard").glob("*/*.*")
        if p.suffix in (".html", ".css", ".js")
    }
    assert shipped and shipped <= names, shipped - names
