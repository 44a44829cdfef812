"""A throwaway certificate authority for the tests that run a private TLS server (Redis,
RabbitMQ), made with the openssl command line.

The certificates pass strict X.509 verification (`ssl.VERIFY_X509_STRICT`, on by default in
Python 3.13's `ssl.create_default_context()`): the CA says it is one, in critical extensions,
and what its key may sign; the leaf says what its key is for and which CA key signed it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

EXTENSIONS = """\
[req]
distinguished_name = subject
prompt = no

[subject]
CN = forkq test CA

[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


def make_certificates(directory: Path) -> dict[str, str]:
    """A CA and a certificate for 127.0.0.1 signed by it, usable by a server and by a client."""
    paths = {name: str(directory / f"{name}.pem") for name in ("ca", "ca-key", "cert", "key")}
    csr, config = directory / "leaf.csr", directory / "openssl.cnf"
    config.write_text(EXTENSIONS)
    for command in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-config", str(config),
         "-extensions", "ca", "-keyout", paths["ca-key"], "-out", paths["ca"]],
        ["req", "-new", "-newkey", "rsa:2048", "-nodes", "-config", str(config),
         "-subj", "/CN=127.0.0.1", "-keyout", paths["key"], "-out", str(csr)],
        ["x509", "-req", "-in", str(csr), "-CA", paths["ca"], "-CAkey", paths["ca-key"],
         "-CAcreateserial", "-days", "1", "-extfile", str(config), "-extensions", "leaf",
         "-out", paths["cert"]],
    ):  # fmt: skip
        subprocess.run(["openssl", *command], check=True, capture_output=True, timeout=60)
    return paths
