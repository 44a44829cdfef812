"""amqps://: a worker served through a private RabbitMQ node that speaks nothing but TLS, with
a certificate from a throwaway CA; the server's certificate is verified; a client certificate is
presented; bad TLS parameters are one line, not a traceback.

The node is the tests' own: its own name, ports, data, logs, config and Erlang cookie in a
temporary directory, started from the real `rabbitmq-server` script as the current user (the
Debian `/usr/sbin` wrapper would `su` to the rabbitmq user and share the machine node's cookie).
It shares only epmd with the machine's node, whose cookie it does not know: nothing here can
stop or change that node. Stopping it is `rabbitmqctl -n <its name> stop`, then, if need be,
SIGKILL to the process group it was started in, and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
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

from forkq import Forkq
from forkq.engines.amqp.url import connection_parameters, split_url
from forkq.engines.registry import open_broker
from forkq.exceptions import BrokerError, ConfigurationError
from tests.conftest import WorkerProcess, results_url_for, wait_until_serving
from tests.tls import make_certificates

pytestmark = pytest.mark.timeout(120)

STARTUP_TIMEOUT = 60.0  # a first boot takes 7 to 12 s on a 2-vCPU machine
CTL_TIMEOUT = 60.0


def _missing(what: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is not installed (CI=true: no skipping)")
    pytest.skip(f"{what} is not installed")


def rabbitmq_scripts() -> Path:
    """The directory of the real rabbitmq-server and rabbitmqctl scripts."""
    candidates = (shutil.which("rabbitmq-server"), "/usr/sbin/rabbitmq-server")
    found = next((path for path in candidates if path and os.path.exists(path)), None)
    if found is None:
        _missing("rabbitmq-server")
    real = Path(os.path.realpath(found))
    if real.name != "rabbitmq-server":  # Debian's rabbitmq-script-wrapper: the real one is beside
        real = Path(os.path.realpath(real.parent / "rabbitmq-server"))
    return real.parent


def spare_ports(count: int) -> list[int]:
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


class PrivateRabbit:
    """A RabbitMQ node of the tests' own, listening only for AMQP over TLS on a spare port."""

    def __init__(self, directory: Path, scripts: Path) -> None:
        self.directory = directory
        self.scripts = scripts
        self.node = f"forkq-tls-{uuid.uuid4().hex[:10]}@localhost"
        self.port, node_port, dist_port = spare_ports(3)
        self.tls = make_certificates(directory)
        home = directory / "home"
        home.mkdir()
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20))
        cookie.chmod(0o400)
        config = directory / "rabbitmq.conf"
        config.write_text(
            "listeners.tcp = none\n"
            f"listeners.ssl.default = 127.0.0.1:{self.port}\n"
            f"ssl_options.cacertfile = {self.tls['ca']}\n"
            f"ssl_options.certfile = {self.tls['cert']}\n"
            f"ssl_options.keyfile = {self.tls['key']}\n"
            "ssl_options.verify = verify_peer\n"
            "ssl_options.fail_if_no_peer_cert = false\n"
        )
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
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(directory / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(directory / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",  # should it have to start epmd itself
        }
        self.output = directory / "rabbitmq-server.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0

    def url(self, **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"amqps://guest:guest@127.0.0.1:{self.port}/%2F" + (f"?{query}" if query else "")

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
        context = ssl.create_default_context(cafile=self.tls["ca"])
        parameters = pika.ConnectionParameters(
            "127.0.0.1",
            self.port,
            ssl_options=pika.SSLOptions(context),
            connection_attempts=1,
            socket_timeout=2,
            stack_timeout=5,
        )
        deadline = began + STARTUP_TIMEOUT
        while time.monotonic() < deadline:  # ready: an AMQP connection over TLS succeeds
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


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbit]:
    scripts = rabbitmq_scripts()
    if shutil.which("openssl") is None:
        _missing("openssl")
    node = PrivateRabbit(tmp_path_factory.mktemp("rabbitmq-tls"), scripts)
    try:
        node.start()
        print(f"\n{node.node} ready in {node.startup_seconds:.1f}s")
        yield node
    finally:
        node.stop()


def test_a_worker_serves_twenty_tasks_over_amqps(rabbit: PrivateRabbit, e2e_dir: Path) -> None:
    url = rabbit.url(ssl_ca_certs=rabbit.tls["ca"])
    client = Forkq("e2e", broker=url, backend=results_url_for(url, e2e_dir))  # SQLite results
    worker = WorkerProcess(e2e_dir, url, "-c", "2")
    try:
        wait_until_serving(client, worker)
        results = [client.send_task("e2eapp.add", args=[i, i]) for i in range(20)]
        assert [r.get(timeout=30) for r in results] == [2 * i for i in range(20)]
        assert worker.proc.poll() is None
    finally:
        worker.stop()
        client.close()


def test_plain_amqp_to_the_tls_port_fails(rabbit: PrivateRabbit) -> None:
    broker = open_broker(f"amqp://guest:guest@127.0.0.1:{rabbit.port}/%2F")
    with pytest.raises(BrokerError):
        broker.size("default")  # the node speaks nothing but TLS: the tests cannot pass in clear
    broker.close()


def test_a_wrong_ca_fails_with_one_clear_line(
    rabbit: PrivateRabbit, e2e_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "other").mkdir()
    other_ca = make_certificates(tmp_path / "other")["ca"]
    worker = WorkerProcess(e2e_dir, rabbit.url(ssl_ca_certs=other_ca), "-c", "1")
    try:
        assert worker.wait(timeout=30) == 1
        [line] = worker.log().splitlines()
        assert line.startswith(f"forkq: error: rabbitmq broker: TLS with 127.0.0.1:{rabbit.port}")
        assert "certificate verify failed" in line and "ssl_ca_certs" in line
    finally:
        worker.stop()


def test_the_server_certificate_is_verified_by_default(rabbit: PrivateRabbit) -> None:
    broker = open_broker(rabbit.url())  # no ssl_ca_certs: the system's CAs, which never signed it
    with pytest.raises(BrokerError, match="certificate verify failed"):
        broker.size("default")
    broker.close()


def test_a_client_certificate_is_presented(rabbit: PrivateRabbit) -> None:
    url = rabbit.url(
        ssl_ca_certs=rabbit.tls["ca"],
        ssl_certfile=rabbit.tls["cert"],
        ssl_keyfile=rabbit.tls["key"],
    )
    broker = open_broker(url)
    try:
        # A queue of its own: the node is the module's, and a worker killed (SIGKILL) by an
        # earlier test may leave its last message unacked, so RabbitMQ put it back in "default".
        assert broker.size("client-certificate") == 0
        # The node verifies a certificate a client presents (verify_peer) and shows its subject.
        assert "CN=127.0.0.1" in rabbit.ctl("list_connections", "peer_cert_subject")
    finally:
        broker.close()


# -- bad parameters: no server needed ------------------------------------------------------------


@pytest.fixture
def junk(tmp_path: Path) -> str:
    path = tmp_path / "junk.pem"
    path.write_text("not a certificate\n")
    return str(path)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("ssl_ca_certs=/no/such/ca.pem", "ssl_ca_certs=/no/such/ca.pem: no such file"),
        ("ssl_ca_certs={junk}", "ssl_ca_certs={junk}: [X509"),
        ("ssl_certfile={junk}", "ssl_certfile={junk}, ssl_keyfile={junk}: "),
        ("ssl_keyfile={junk}", "ssl_keyfile needs ssl_certfile"),
        ("ssl_ca_certs={junk}&ssl_options={{}}", "either ssl_ca_certs/ssl_certfile/ssl_keyfile"),
        ("ssl_options={{'ca_certs'", "ssl_options: "),
        ("ssl_ca_cert={junk}", "Unknown URL parameter: 'ssl_ca_cert'"),
    ],
)
def test_a_bad_tls_parameter_is_a_configuration_error(query: str, expected: str, junk: str) -> None:
    url = "amqps://guest:secret@127.0.0.1:5671/%2F?" + query.format(junk=junk)
    with pytest.raises(ConfigurationError) as caught:
        open_broker(url)
    message = str(caught.value)
    assert message.startswith("RabbitMQ URL: ") and expected.format(junk=junk) in message
    assert "\n" not in message and "secret" not in message


def test_amqps_checks_the_certificate_and_the_host_name(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        _missing("openssl")
    tls = make_certificates(tmp_path)
    for url in (
        "amqps://guest:guest@rabbit.example.com/%2F",  # the system's CAs (pika's default)
        f"amqps://guest:guest@rabbit.example.com/%2F?ssl_ca_certs={tls['ca']}",
        f"amqps://rabbit.example.com/%2F?ssl_certfile={tls['cert']}&ssl_keyfile={tls['key']}",
    ):
        context = connection_parameters(*split_url(url)).ssl_options.context
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_tls_parameters_need_amqps(junk: str) -> None:
    with pytest.raises(ConfigurationError, match="need an amqps:// URL, not amqp://"):
        open_broker(f"amqp://guest:guest@127.0.0.1/%2F?ssl_ca_certs={junk}")


def test_the_worker_says_so_in_one_line(e2e_dir: Path) -> None:
    url = "amqps://guest:guest@127.0.0.1:5671/%2F?ssl_ca_certs=/no/such/ca.pem"
    worker = WorkerProcess(e2e_dir, url, "-c", "1")
    try:
        assert worker.wait(timeout=30) == 2  # a bad setting
        assert worker.log() == (
            "forkq: error: RabbitMQ URL: ssl_ca_certs=/no/such/ca.pem: no such file\n"
        )
    finally:
        worker.stop()
