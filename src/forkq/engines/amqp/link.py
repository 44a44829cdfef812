"""The RabbitMQ broker's connection (one per process) and the one place every call on it goes
through, `Link.run`: under one lock (the keeper thread shares the connection), with pika's
errors turned into `BrokerError`, and, for a call that can be repeated, made once more on a
new connection when the one it found had been dropped (a broker restart, a proxy or firewall
closing idle connections, a missed heartbeat). See `forkq.engines.amqp.broker`.

Which calls can be repeated is the caller's to say, since only it knows what the call did:

- repeatable: whatever names queues, not deliveries. Publishing (at least once: a publish
  whose confirm was lost is sent again), reading sizes and dead letters, purging (the count
  is of what the second attempt purged), requeueing or purging dead letters (their browsing
  channel died with the connection, so RabbitMQ put back every letter whose ack it had not
  received, and the second attempt takes them; a letter republished but not yet acked is
  then requeued twice: at least once), heartbeats.
- not repeatable: whatever acts on messages a consumer's channel holds. Their delivery tags
  are numbers on that channel, meaningless on another (an ack there would settle nothing, or
  another message); RabbitMQ put those messages back when the connection closed and will
  redeliver them. That covers every verb of a consumer's session
  (`forkq.engines.amqp.session`): sending kept acks, finish, requeue, dead-letter,
  stop_fetching, release, close, and fetch (which sends kept acks, takes from the consumer's
  buffer and republishes early messages on its channel): the error reaches the child, whose
  loop fetches again after a back-off, on a new connection.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import TypeVar

import pika
import pika.exceptions

from forkq.engines.amqp.reading import ReadingConnection
from forkq.engines.amqp.url import tls_failure
from forkq.exceptions import BrokerError, BrokerFull, BrokerUnavailable

T = TypeVar("T")


class ConnectionLost(BrokerUnavailable):
    """The connection is gone (or could not be opened): what was on it is forgotten."""


class Link:
    def __init__(
        self,
        parameters: pika.ConnectionParameters,
        *,
        on_lost: Callable[[], None],
        on_channel_error: Callable[[], None],
    ) -> None:
        self.parameters = parameters
        self.connection: pika.BlockingConnection | None = None
        self.lock = threading.RLock()
        self._on_lost = on_lost  # forgets what lived on the connection: every channel
        self._on_channel_error = on_channel_error  # a channel error closes that channel

    @property
    def is_open(self) -> bool:
        """Open as far as pika knows: a dropped connection shows only when it is used."""
        return self.connection is not None and self.connection.is_open

    def open(self) -> pika.BlockingConnection:
        if self.connection is None or not self.connection.is_open:
            self.forget()
            self.connection = pika.BlockingConnection(
                self.parameters, _impl_class=ReadingConnection
            )
        return self.connection

    def forget(self) -> None:
        self.connection = None
        self._on_lost()

    def run(self, call: Callable[[], T], *, repeatable: bool) -> T:
        """`call()`, with the connection to itself. A repeatable call that finds the connection
        it was given dropped is made once more, on a new connection; one that fails to open
        a connection is not (the server is down: the caller backs off)."""
        with self.lock:
            found_open = self.is_open
            try:
                return self._translated(call)
            except ConnectionLost:
                if not (repeatable and found_open):
                    raise
            return self._translated(call)

    def _translated(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except ssl.SSLError as exc:  # pika raises a failed TLS handshake as it is
            self.forget()  # not an outage: waiting will not make a certificate valid
            raise BrokerError(tls_failure(self.parameters, exc)) from exc
        except pika.exceptions.ProbableAuthenticationError as exc:  # not an outage: waiting
            self.forget()  # will not make a login good, nor create a vhost
            raise BrokerError(login_refused(self.parameters, exc)) from exc
        except pika.exceptions.ProbableAccessDeniedError as exc:
            self.forget()
            raise BrokerError(vhost_refused(self.parameters, exc)) from exc
        except pika.exceptions.ConnectionBlockedTimeout as exc:  # pika closed the connection
            self.forget()  # not an outage to ride out, nor a call to repeat: the server is full
            raise BrokerFull(blocked_too_long(self.parameters)) from exc
        except (pika.exceptions.AMQPError, OSError) as exc:
            # A channel used after its connection died raises a channel error: still a loss.
            if isinstance(exc, pika.exceptions.AMQPConnectionError) or not self.is_open:
                self.forget()
                raise ConnectionLost(f"rabbitmq broker: connection lost ({exc!r})") from exc
            self._on_channel_error()
            raise BrokerError(f"rabbitmq broker: {exc!r}") from exc
        except Exception:
            raise
        except BaseException:
            # An interruption (a child's stop signal, raised while it waits) may land anywhere
            # in pika, half way through a frame: pika's state is unknown, so nothing more is
            # said on this connection. What it held, RabbitMQ puts back when it closes.
            self.forget()
            raise

    def close(self) -> None:
        with self.lock:
            connection, self.connection = self.connection, None
            self.forget()
            if connection is not None and connection.is_open:
                with suppress(pika.exceptions.AMQPError, OSError):
                    connection.close()

    def abandon(self) -> None:
        """In a forked child: the socket belongs to the parent's session; drop it unsaid."""
        self.connection = None
        self.lock = threading.RLock()


# RabbitMQ closes a connection it refuses with a reply code that pika turns into a type: 403
# ACCESS_REFUSED while logging in (ProbableAuthenticationError: wrong user name or password),
# 530 NOT_ALLOWED when opening the vhost (ProbableAccessDeniedError: no such vhost, or the user
# has no permissions on it). pika keeps RabbitMQ's words only as text, shown as they are.


def login_refused(parameters: pika.ConnectionParameters, exc: Exception) -> str:
    return (
        f"rabbitmq broker {parameters.host}:{parameters.port} refused the login of user "
        f"{_user(parameters)!r}: wrong user name or password ({_server_words(exc)})"
    )


def vhost_refused(parameters: pika.ConnectionParameters, exc: Exception) -> str:
    vhost = parameters.virtual_host
    return (
        f"rabbitmq broker {parameters.host}:{parameters.port}: vhost {vhost!r} does not exist "
        f"or user {_user(parameters)!r} has no permissions on it ({_server_words(exc)}); the "
        "URL's path is the vhost: amqp://HOST// or amqp://HOST/%2F is '/'"
    )


def blocked_too_long(parameters: pika.ConnectionParameters) -> str:
    return (
        f"rabbitmq broker {parameters.host}:{parameters.port} blocked this connection for "
        f"more than {parameters.blocked_connection_timeout:g} s: a memory or disk alarm (the "
        "node is over vm_memory_high_watermark or under disk_free_limit; `rabbitmqctl status` "
        "lists its alarms) stops it reading from publishers. The message was not confirmed: "
        "it may still be enqueued when the alarm clears. Free memory or disk on the node "
        "(consume or purge queues); the URL's ?blocked_connection_timeout=SECONDS sets the wait"
    )


def _user(parameters: pika.ConnectionParameters) -> str:
    credentials = parameters.credentials
    return credentials.username if isinstance(credentials, pika.PlainCredentials) else "?"


def _server_words(exc: Exception) -> str:
    said = exc.args[0] if exc.args and isinstance(exc.args[0], str) else repr(exc)
    return "RabbitMQ: " + said.removeprefix("ConnectionClosedByBroker: ")
