"""The RabbitMQ URL (`amqp://`, `amqps://`): forkq's own parameters (prefix, lease_ttl,
queue_type, expires, and TLS files as rediss:// URLs name them) split from pika's, the vhost
read as Celery reads it, and what a refused TLS handshake means. See
`forkq.engines.amqp.broker`."""

from __future__ import annotations

import os
import ssl
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import pika

from forkq.engines.amqp.topology import Topology
from forkq.engines.contract import DeadLetterCaps
from forkq.exceptions import ConfigurationError
from forkq.settings import redacted

TLS_PARAMS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")  # the names rediss:// URLs use
OWN_PARAMS = ("prefix", "lease_ttl", "queue_type", "expires", *TLS_PARAMS)

#: Seconds a connection may stay blocked by RabbitMQ (a memory or disk alarm stops it reading
#: from publishers) before pika closes it and the call fails (`BrokerFull`), unless the URL
#: sets pika's own `blocked_connection_timeout`. Without it a publish would wait for as long
#: as the alarm lasts.
BLOCKED_FOR_AT_MOST = 30.0


def split_url(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    own = {k: v for k, v in query if k in OWN_PARAMS}
    rest = urlencode([(k, v) for k, v in query if k not in OWN_PARAMS])
    return urlunsplit(parts._replace(query=rest)), own


def topology_from(own: dict[str, str], url: str, dead_caps: DeadLetterCaps) -> Topology:
    queue_type = own.get("queue_type", "classic")
    if queue_type not in ("classic", "quorum"):
        raise ConfigurationError(f"queue_type in {redacted(url)!r} must be classic or quorum")
    expires = own.get("expires")
    return Topology(
        own.get("prefix", "forkq"),
        quorum=queue_type == "quorum",
        expires_ms=int(float(expires) * 1000) if expires else None,
        dead_caps=dead_caps,
    )


def connection_parameters(pika_url: str, own: dict[str, str]) -> pika.URLParameters:
    """pika's parameters for the URL without forkq's own parameters. `amqps://` verifies the
    server's certificate and host name, against `ssl_ca_certs` or else the system's CAs, and
    presents `ssl_certfile`/`ssl_keyfile` when given. A bad parameter is one ConfigurationError
    (never the URL itself: it may hold a password)."""
    parts = urlsplit(pika_url)
    pikas_tls = "ssl_options" in dict(parse_qsl(parts.query))
    tls = {k: v for k, v in own.items() if k in TLS_PARAMS}
    if tls and parts.scheme.lower() != "amqps":
        raise ConfigurationError(
            f"RabbitMQ URL: TLS parameters ({', '.join(tls)}) need an amqps:// URL, "
            f"not {parts.scheme}://"
        )
    if tls and pikas_tls:
        raise ConfigurationError(
            "RabbitMQ URL: give either ssl_ca_certs/ssl_certfile/ssl_keyfile or pika's "
            "ssl_options, not both"
        )
    try:
        # pika reads its own ssl_options as a Python literal and loads the files it names
        parameters = pika.URLParameters(pika_url)
    except (ValueError, TypeError, SyntaxError, AttributeError, OSError) as exc:
        where = "ssl_options: " if pikas_tls and not isinstance(exc, ValueError) else ""
        raise ConfigurationError(f"RabbitMQ URL: {where}{exc}") from None
    if tls:
        parameters.ssl_options = pika.SSLOptions(tls_context(tls))
    parameters.virtual_host = vhost_of(parts.path)
    if "blocked_connection_timeout" not in dict(parse_qsl(parts.query)):
        parameters.blocked_connection_timeout = BLOCKED_FOR_AT_MOST
    return parameters


def vhost_of(path: str) -> str:
    """The vhost a URL's path names, read as Celery reads it: everything after the first
    '/', percent-decoded, and '/' when that is empty. So `amqp://host//` and
    `amqp://host/%2F` are vhost '/', `amqp://host/a/b` is 'a/b' (pika would take '' and 'a')."""
    return unquote(path[1:]) or "/"


def tls_context(tls: dict[str, str]) -> ssl.SSLContext:
    ca, certfile, keyfile = (tls.get(name) for name in TLS_PARAMS)
    if keyfile and not certfile:
        raise ConfigurationError("RabbitMQ URL: ssl_keyfile needs ssl_certfile (its certificate)")
    for name, path in tls.items():
        if not os.path.isfile(path):
            raise ConfigurationError(f"RabbitMQ URL: {name}={path}: no such file")

    def no_password() -> bytes:  # OpenSSL would ask on the terminal instead
        raise ConfigurationError(f"RabbitMQ URL: ssl_keyfile={keyfile or certfile} is encrypted")

    try:
        context = ssl.create_default_context(cafile=ca)  # CERT_REQUIRED, check_hostname
    except OSError as exc:  # ssl.SSLError too: not PEM, say
        raise ConfigurationError(
            f"RabbitMQ URL: ssl_ca_certs={ca}: {exc.strerror or exc}"
        ) from None
    if certfile:
        try:
            context.load_cert_chain(certfile, keyfile, password=no_password)
        except OSError as exc:
            raise ConfigurationError(
                f"RabbitMQ URL: ssl_certfile={certfile}, ssl_keyfile={keyfile or certfile}: "
                f"{exc.strerror or exc}"
            ) from None
    return context


def tls_failure(parameters: pika.ConnectionParameters, exc: ssl.SSLError) -> str:
    """What a refused TLS handshake means; pika raises it as it is, not as a connection error."""
    where = f"{parameters.host}:{parameters.port}"
    text = f"rabbitmq broker: TLS with {where} failed: {exc.strerror or repr(exc)}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        text += (
            " (ssl_ca_certs must name the CA that signed RabbitMQ's certificate, and the "
            "certificate must name the URL's host)"
        )
    return text
