"""amqps://: a worker served through a private RabbitMQ node (tests/rabbit_servers.py) that
speaks nothing but TLS, with a certificate from a throwaway CA; the server's certificate is
verified; a client certificate is presented; bad TLS parameters are one line, not a traceback.
"""

from __future__ import annotations

import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from forkq import Forkq
from forkq.engines.amqp.url import connection_parameters, split_url
from forkq.engines.registry import open_broker
from forkq.exceptions import BrokerError, ConfigurationError
from tests.conftest import WorkerProcess, results_url_for, wait_until_serving
from tests.rabbit_servers import PrivateRabbit, missing, rabbitmq_scripts
from tests.tls import make_certificates

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbit]:
    scripts = rabbitmq_scripts()
    if shutil.which("openssl") is None:
        missing("openssl")
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
        missing("openssl")
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
