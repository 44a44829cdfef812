"""A RabbitMQ node of the tests' own, for what the machine's node must not see (TLS only, a
memory alarm): its own name, ports, data, logs, config and Erlang cookie in a temporary
directory, started from the real `rabbitmq-server` script as the current user (the Debian
`/usr/sbin` wrapper would `su` to the rabbitmq user and share the machine node's cookie).
It shares only epmd with the machine's node, whose cookie it does not know: nothing here can
stop or change that node. Stopping it is `rabbitmqctl -n <its name> stop`, then, if need be,
SIGKILL to the process group it was started in, and nothing else."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pika
import pika.exceptions
import pytest

from tests.ports import server_port
from tests.tls import make_certificates

STARTUP_TIMEOUT = 60.0  # a first boot takes 7 to 12 s on a 2-vCPU machine
CTL_TIMEOUT = 60.0


def missing(what: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is not installed (CI=true: no skipping)")
    pytest.skip(f"{what} is not installed")


def rabbitmq_scripts() -> Path:
    """The directory of the real rabbitmq-server and rabbitmqctl scripts."""
    candidates = (shutil.which("rabbitmq-server"), "/usr/sbin/rabbitmq-server")
    found = next((path for path in candidates if path and os.path.exists(path)), None)
    if found is None:
        missing("rabbitmq-server")
    real = Path(os.path.realpath(found))
    if real.name != "rabbitmq-server":  # Debian's rabbitmq-script-wrapper: the real one is beside
        real = Path(os.path.realpath(real.parent / "rabbitmq-server"))
    return real.parent


def spare_ports(count: int) -> list[int]:
    """Distinct free ports below the kernel's range for outgoing connections (ports.py): a
    port from that range could be handed to a client's connection before the node binds it."""
    ports: list[int] = []
    while len(ports) < count:
        port = server_port()
        if port not in ports:
            ports.append(port)
    return ports


class PrivateRabbit:
    """A RabbitMQ node of the tests' own, listening on a spare port only: for AMQP over TLS
    (`tls`, with a certificate from a throwaway CA), or else in clear; `config` is more lines
    of its rabbitmq.conf."""

    def __init__(self, directory: Path, scripts: Path, tls: bool = True, config: str = "") -> None:
        self.directory = directory
        self.scripts = scripts
        self.node = f"forkq-{'tls' if tls else 'amqp'}-{uuid.uuid4().hex[:10]}@localhost"
        self.port, node_port, dist_port = spare_ports(3)
        self.tls = make_certificates(directory) if tls else None
        home = directory / "home"
        home.mkdir()
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20))
        cookie.chmod(0o400)
        conf = directory / "rabbitmq.conf"
        conf.write_text(self._listeners() + config)
        (directory / "enabled_plugins").write_text("[].\n")
        (directory / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq's (its NODENAME)
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        self.env = {
            **inherited,
            "HOME": str(home),  # the cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(node_port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(directory / "log"),
            "RABBITMQ_PID_FILE": str(directory / "rabbit.pid"),
            "RABBITMQ_CONFIG_FILE": str(conf),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(directory / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(directory / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",  # should it have to start epmd itself
        }
        self.output = directory / "rabbitmq-server.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0

    def _listeners(self) -> str:
        if self.tls is None:
            return f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
        return (
            "listeners.tcp = none\n"
            f"listeners.ssl.default = 127.0.0.1:{self.port}\n"
            f"ssl_options.cacertfile = {self.tls['ca']}\n"
            f"ssl_options.certfile = {self.tls['cert']}\n"
            f"ssl_options.keyfile = {self.tls['key']}\n"
            "ssl_options.verify = verify_peer\n"
            "ssl_options.fail_if_no_peer_cert = false\n"
        )

    def url(self, **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        scheme = "amqp" if self.tls is None else "amqps"
        base = f"{scheme}://guest:guest@127.0.0.1:{self.port}/%2F"
        return base + (f"?{query}" if query else "")

    def _probe(self) -> pika.ConnectionParameters:
        """What start() connects with to learn the node is ready."""
        tls = None
        if self.tls is not None:
            tls = pika.SSLOptions(ssl.create_default_context(cafile=self.tls["ca"]))
        return pika.ConnectionParameters(
            "127.0.0.1",
            self.port,
            ssl_options=tls,
            connection_attempts=1,
            socket_timeout=2,
            stack_timeout=5,
        )

    def start(self) -> None:
        began = time.monotonic()
        with self.output.open("wb") as output:
            self.proc = subprocess.Popen(
                [str(self.scripts / "rabbitmq-server")],
                cwd=self.directory,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the only one teardown kills
            )
        parameters = self._probe()
        deadline = began + STARTUP_TIMEOUT
        while time.monotonic() < deadline:  # ready: an AMQP connection succeeds
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"rabbitmq-server exited with {self.proc.returncode}:\n{self.log()}"
                )
            try:
                pika.BlockingConnection(parameters).close()
            except pika.exceptions.AMQPConnectionError:
                time.sleep(0.1)
            else:
                self.startup_seconds = time.monotonic() - began
                return
        raise RuntimeError(f"{self.node} not ready after {STARTUP_TIMEOUT}s:\n{self.log()}")

    def ctl(self, *args: str) -> str:
        done = subprocess.run(
            [str(self.scripts / "rabbitmqctl"), "-n", self.node, *args],
            env=self.env,
            capture_output=True,
            timeout=CTL_TIMEOUT,
            check=True,
        )
        return done.stdout.decode(errors="replace")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.ctl("stop")
            self.proc.wait(timeout=30)
        except (subprocess.SubprocessError, OSError):
            with contextlib.suppress(ProcessLookupError):  # the group started above, unreaped
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log(self) -> str:
        lines = self.output.read_text(errors="replace").splitlines()
        return "\n".join(lines[-40:])


@contextlib.contextmanager
def running_rabbit(directory: Path, config: str = "") -> Iterator[PrivateRabbit]:
    """A clear-text private node, started, with more rabbitmq.conf lines (`config`); stopped
    on the way out."""
    node = PrivateRabbit(directory, rabbitmq_scripts(), tls=False, config=config)
    try:
        node.start()
        yield node
    finally:
        node.stop()
