"""A throwaway certificate authority for the tests that run a private TLS server (Redis,
RabbitMQ), made with the openssl command line."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_certificates(directory: Path) -> dict[str, str]:
    """A CA and a server certificate for 127.0.0.1 signed by it, made with the openssl CLI."""
    paths = {name: str(directory / f"{name}.pem") for name in ("ca", "ca-key", "cert", "key")}
    csr, ext = directory / "server.csr", directory / "san.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1\n")
    for command in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
         "-keyout", paths["ca-key"], "-out", paths["ca"]],
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", paths["key"], "-out", str(csr)],
        ["x509", "-req", "-in", str(csr), "-CA", paths["ca"], "-CAkey", paths["ca-key"],
         "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", paths["cert"]],
    ):  # fmt: skip
        subprocess.run(["openssl", *command], check=True, capture_output=True, timeout=60)
    return paths
