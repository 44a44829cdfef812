"""What the RabbitMQ broker keeps per consumer (its channel, buffer and held messages), the
thread that answers heartbeats while a task runs, and the URL's own parameters (TLS
included). See `forkq.engines.amqp.broker`."""

from __future__ import annotations

import os
import ssl
import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import msgspec
import pika
from pika.adapters.blocking_connection import BlockingChannel

from forkq.engines.amqp.reading import Message, message_from
from forkq.engines.amqp.topology import Topology
from forkq.engines.contract import DeadLetterCaps
from forkq.exceptions import ConfigurationError
from forkq.settings import redacted

TLS_PARAMS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")  # the names rediss:// URLs use
OWN_PARAMS = ("prefix", "lease_ttl", "queue_type", "expires", *TLS_PARAMS)
KEEPER_INTERVAL = 1.0  # seconds between the keeper thread's looks at the connection


class Session(msgspec.Struct):
    """One forkq consumer: its own channel, what RabbitMQ pushed to it, what it handed out."""

    channel: BlockingChannel
    consuming: dict[str, str] = msgspec.field(default_factory=dict)  # consumer tag -> forkq queue
    buffer: deque[Message] = msgspec.field(default_factory=deque)
    held: dict[str, Message] = msgspec.field(default_factory=dict)  # receipt -> message
    qos: int = 0
    kept_tag: int = 0  # the highest finished delivery tag whose ack is kept back; 0: none

    def keep(self, tag: int) -> None:
        """A finished message's ack waits, to go with the rest of its batch, as one ack with
        `multiple`, which covers every tag below it. A child settles its messages in tag
        order, so that is safe; a message settled out of order is acked at once instead."""
        if any(held.tag < tag for held in self.held.values()):
            self.send_kept()
            self.channel.basic_ack(tag)
        else:
            self.kept_tag = max(self.kept_tag, tag)

    def send_kept(self) -> None:
        """One basic.ack (multiple) for every message kept back."""
        if self.kept_tag and self.channel.is_open:
            self.channel.basic_ack(self.kept_tag, multiple=True)
        self.kept_tag = 0

    def consume(self, queues: Sequence[str], declare: Callable[[str], str]) -> None:
        """Subscribe to each queue not subscribed yet (`declare` names its AMQP queue)."""
        for queue in sorted(set(queues) - set(self.consuming.values())):

            def received(_ch: Any, method: Any, props: Any, body: bytes, q: str = queue) -> None:
                self.buffer.append(message_from(q, method, props, body))

            tag = self.channel.basic_consume(declare(queue), received)
            self.consuming[tag] = queue

    def pull(self, queues: Sequence[str], limit: int, declare: Callable[[str], str]) -> int:
        """basic.get into the buffer, up to `limit` in it; returns how many came."""
        before = len(self.buffer)
        for queue in queues:
            name = declare(queue)
            while len(self.buffer) < limit:
                method, props, body = self.channel.basic_get(name)
                if method is None:
                    break
                self.buffer.append(message_from(queue, method, props, body))
        return len(self.buffer) - before

    def set_qos(self, prefetch: int, quorum: bool) -> None:
        # Classic queues: one limit for the channel, changed on the fly. Quorum queues only
        # take a per-consumer limit, fixed when each consumer starts.
        if self.qos != prefetch:
            self.channel.basic_qos(prefetch_count=prefetch, global_qos=not quorum)
            self.qos = prefetch

    def cancel(self, quorum: bool, connection: Callable[[], Any]) -> None:
        """Cancel the consumer while it still holds a message: pika rejects what is in flight
        at a cancel, and RabbitMQ redelivers that as if this process had died (a start
        counted). So first no credit (qos = what is outstanding), and what was already sent
        goes into the buffer. With nothing outstanding a push can still cross the cancel."""
        if not self.consuming or not self.channel.is_open:
            return
        self.send_kept()
        outstanding = len(self.held) + len(self.buffer)
        if outstanding and not quorum:
            self.set_qos(outstanding, quorum)
        connection().process_data_events(time_limit=0)
        for tag in list(self.consuming):
            self.channel.basic_cancel(tag)
        self.consuming.clear()


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


class Keeper:
    """A thread that, once a second, tends a connection nobody else is using (it only takes
    the lock when free: while the main thread runs a task): `tend` sends kept acks and
    answers AMQP heartbeats."""

    def __init__(self, lock: threading.RLock, tend: Callable[[], None]) -> None:
        self._lock = lock
        self._tend = tend
        self._stop = threading.Event()
        self._held_for_fork = False
        self._thread = threading.Thread(target=self._run, name="forkq-amqp-keeper", daemon=True)
        self._thread.start()
        # A child forking a task's process (--max-tasks-per-child 1) must not copy this
        # thread's connection state halfway through a send: the lock is held across fork.
        self._owner = os.getpid()  # in a forked copy the thread does not exist
        ref = weakref.ref(self)
        os.register_at_fork(
            before=lambda: _call_if_alive(ref, Keeper._hold_for_fork),
            after_in_parent=lambda: _call_if_alive(ref, Keeper._let_go_after_fork),
            after_in_child=lambda: _call_if_alive(ref, Keeper._let_go_after_fork),
        )

    def _hold_for_fork(self) -> None:
        if os.getpid() == self._owner and not self._stop.is_set():
            self._held_for_fork = self._lock.acquire()

    def _let_go_after_fork(self) -> None:
        """In the parent, and in the forked copy too (the forking thread is its one thread
        and owns the copied lock): released, so nothing there waits on it forever."""
        if self._held_for_fork:
            self._held_for_fork = False
            self._lock.release()

    def _run(self) -> None:
        while not self._stop.wait(KEEPER_INTERVAL):
            if self._lock.acquire(blocking=False):
                try:
                    self._tend()
                except Exception:  # the main thread sees the same failure on its next call
                    pass
                finally:
                    self._lock.release()

    def stop(self) -> None:
        self._stop.set()


def _call_if_alive(ref: weakref.ref[Keeper], method: Callable[[Keeper], None]) -> None:
    keeper = ref()
    if keeper is not None:
        method(keeper)


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
