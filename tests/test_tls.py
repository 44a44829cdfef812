"""The tests' throwaway CA (tests/tls.py) passes strict X.509 verification, as Python 3.13
applies by default, on whichever Python runs the suite: a handshake in memory, no server."""

from __future__ import annotations

import os
import shutil
import ssl
from pathlib import Path

import pytest

from tests.tls import make_certificates


@pytest.fixture
def tls(tmp_path: Path) -> dict[str, str]:
    if shutil.which("openssl") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("openssl is not installed (CI=true: no skipping)")
        pytest.skip("openssl is not installed")
    return make_certificates(tmp_path)


def strict(context: ssl.SSLContext, tls: dict[str, str]) -> ssl.SSLContext:
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(tls["cert"], tls["key"])
    return context


def handshake(client: ssl.SSLContext, server: ssl.SSLContext, hostname: str) -> None:
    """Both ends of a TLS handshake, their bytes passed in memory until both are done."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_end = client.wrap_bio(to_client, to_server, server_hostname=hostname)
    server_end = server.wrap_bio(to_server, to_client, server_side=True)
    pending = [client_end, server_end]
    for _ in range(10):
        for end in list(pending):
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                continue
            pending.remove(end)
        if not pending:
            return
    raise AssertionError("the handshake did not finish in 10 rounds")


def test_the_test_certificates_pass_strict_verification_both_ways(tls: dict[str, str]) -> None:
    client = strict(ssl.create_default_context(cafile=tls["ca"]), tls)
    server = strict(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tls["ca"]), tls)
    handshake(client, server, "127.0.0.1")  # the server's certificate and the client's


def test_strict_verification_still_checks_the_name(tls: dict[str, str]) -> None:
    client = strict(ssl.create_default_context(cafile=tls["ca"]), tls)
    server = strict(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tls["ca"]), tls)
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        handshake(client, server, "127.0.0.2")
