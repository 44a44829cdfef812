"""RabbitMQ URLs as Celery users write them, and the one line a refused connection gets.

The vhost is the URL's path after its first '/', percent-decoded (`//` and `/%2F` are '/'),
as Celery reads it. A vhost that does not exist, one the user may not use, and a wrong
password each get a line that says which, from the library and from the command line. Tested
against the real server: the vhost a test makes with `rabbitmqctl` is deleted after it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from forkq.engines.amqp.url import connection_parameters
from forkq.engines.contract import Consumer, outgoing
from forkq.engines.registry import open_backend, open_broker
from forkq.exceptions import BrokerError
from tests.conftest import engine_url

SERVER = "amqp://guest:guest@127.0.0.1:5672"


@pytest.mark.parametrize(
    ("path", "vhost"),
    [("//", "/"), ("/%2F", "/"), ("/", "/"), ("", "/"), ("/myvhost", "myvhost"),
     ("/a/b", "a/b"), ("/a%2Fb", "a/b"), ("/%2Fprod", "/prod")],
)  # fmt: skip
def test_the_path_after_the_first_slash_is_the_vhost(path: str, vhost: str) -> None:
    assert connection_parameters(f"{SERVER}{path}", {}).virtual_host == vhost


@pytest.fixture
def server() -> Iterator[str]:
    yield from engine_url("amqp", SERVER)


def _unique() -> str:
    return f"forkq-test-{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("path", ["//", "/%2F", ""])
def test_celerys_spelling_of_the_default_vhost_works(server: str, path: str) -> None:
    broker = open_broker(f"{server}{path}?prefix={_unique()}&expires=60")
    try:
        broker.publish([outgoing("q", b"hello")])
        child = broker.consumer(Consumer("w", "w/1"), open_backend("memory://amqp-login"))
        got = child.fetch(["q"], 1, 5.0)
        assert [d.body for d in got] == [b"hello"]
        child.finish(got[0], None)
    finally:
        broker.close()


def _refusal(url: str) -> str:
    broker = open_broker(url)
    try:
        with pytest.raises(BrokerError) as caught:
            broker.publish([outgoing("q", b"x")])
    finally:
        broker.close()
    return str(caught.value)


def test_a_vhost_that_does_not_exist_is_named(server: str) -> None:
    vhost = _unique()
    said = _refusal(f"{server}/{vhost}?prefix={_unique()}")
    assert f"vhost {vhost!r} does not exist or user 'guest' has no permissions on it" in said
    assert "not found" in said  # RabbitMQ's own words
    assert "wrong user name or password" not in said


def test_a_wrong_password_is_named(server: str) -> None:
    said = _refusal(f"amqp://guest:wrong@127.0.0.1:5672//?prefix={_unique()}")
    assert "refused the login of user 'guest': wrong user name or password" in said
    assert "ACCESS_REFUSED" in said
    assert "wrong" not in said.split("user 'guest'")[0]  # the password is never shown


@pytest.fixture
def foreign_vhost(server: str) -> Iterator[str]:
    """A vhost that exists but on which guest has no permissions (made and deleted here)."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.skip("making a vhost needs rabbitmqctl")
    vhost = _unique()
    subprocess.run([ctl, "add_vhost", vhost], check=True, capture_output=True, timeout=60)
    try:
        yield vhost
    finally:
        subprocess.run([ctl, "delete_vhost", vhost], capture_output=True, timeout=60)


def test_a_vhost_the_user_may_not_use_is_named(server: str, foreign_vhost: str) -> None:
    said = _refusal(f"{server}/{foreign_vhost}?prefix={_unique()}")
    assert f"vhost {foreign_vhost!r} does not exist or user 'guest' has no permissions" in said
    assert "refused for user 'guest'" in said  # RabbitMQ's own words


APP = "from forkq import Forkq\napp = Forkq('proj')\n@app.task\ndef add(x, y):\n    return x + y\n"


@pytest.mark.parametrize(
    ("url", "expected"),
    [(f"{SERVER}/no-such-vhost-{uuid.uuid4().hex[:6]}", "does not exist or user 'guest'"),
     ("amqp://guest:wrong@127.0.0.1:5672//", "wrong user name or password")],
)  # fmt: skip
@pytest.mark.parametrize("command", [["call", "proj.add", "1", "2"], ["worker", "-c", "1"]])
def test_the_command_line_says_it_in_one_line(
    server: str, tmp_path: Path, url: str, expected: str, command: list[str]
) -> None:
    (tmp_path / "proj.py").write_text(APP)
    backend = f"sqlite:///{tmp_path}/results.sqlite3"
    done = subprocess.run(
        [sys.executable, "-m", "forkq", "-A", "proj", "--broker", url, "--backend", backend,
         *command],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("forkq: error: rabbitmq broker 127.0.0.1:5672")
    assert expected in lines[0]
