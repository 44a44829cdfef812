"""Inspect and control the workers of an app from any process: `app.control`.

    app.control.inspect("stats")                          every worker on every host
    app.control.inspect("ping", destination=["w1"], timeout=2)
    app.control.broadcast("pool-grow", {"n": 2}, destination=["w1"])
    app.control.broadcast("add-queue", {"queue": "reports"})

Both return `Replies`: each worker's reply by name, and the workers expected that did not
answer within `timeout` (`missing`). `broadcast` is generic: a command no worker knows comes
back as each worker's error (`Replies.errors`), never as an exception here.

On a broker that carries control (Redis, RabbitMQ) the request goes over it to every worker's
agent (`forkq.engines.contract.control`, `forkq.worker.agent`), signed with the app's secret
when it has one; the workers expected are those that announced themselves. Otherwise
(SQLite, memory) it goes to the masters of this host through their control sockets
(`forkq.control_local`), and only workers named in `destination` can be missing.

Thread-safe: a process's threads (a web dashboard's) may share `app.control`; each request
and its replies hold the channel alone (a lock), so a second thread's request waits for the
first's replies, at most its timeout. Over the local sockets each request has its own.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from forkq.control_local import ask_local
from forkq.control_replies import Replies, Route
from forkq.engines.contract import Broker, ControlChannel
from forkq.engines.registry import carries_control
from forkq.exceptions import ConfigurationError

DEFAULT_TIMEOUT = 1.0

__all__ = ["Control", "Replies", "Route"]


class Control:
    """One process's client; its channel (an open reply inbox) is kept for the next request
    and closed with the app. Not shared across fork: a child makes its own. Its threads take
    turns on the channel (`_turn`)."""

    def __init__(self, broker_url: str, broker: Callable[[], Broker], secret: str | None) -> None:
        self._url, self._broker, self._secret = broker_url, broker, secret
        self._channel: ControlChannel | None = None
        self._pid = os.getpid()
        self._exchange = threading.Lock()  # held from a request's sending to its last reply

    @property
    def over_broker(self) -> bool:
        """Whether requests go over the broker (else to this host's control sockets)."""
        return carries_control(self._url)

    def inspect(
        self,
        command: str,
        destination: Sequence[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        args: Mapping[str, Any] | None = None,
    ) -> Replies:
        """Ask every worker (or those named) what `command` says: ping, stats, active,
        memory, reserved, registered, conf, scheduled, revoked."""
        return self.broadcast(command, args, destination, timeout)

    def broadcast(
        self,
        command: str,
        args: Mapping[str, Any] | None = None,
        destination: Sequence[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Replies:
        """Tell every worker (or those named) to do `command` with `args`: pool-grow {n},
        pool-shrink {n}, add-queue {queue}, cancel-queue {queue}, shutdown, or any command a
        worker registers."""
        _check(command, destination, timeout)
        if not self.over_broker:
            return ask_local(command, args, destination, timeout)
        with self._turn():
            got = self.channel().ask(command, args, destination, timeout)
        twice = tuple(f"two workers answer to the name {name}" for name in got.duplicates)
        return Replies(
            command,
            {name: reply.body for name, reply in got.replies.items()},
            got.missing,
            got.last_seen,
            Route.BROKER,
            twice,
        )

    def _turn(self) -> threading.Lock:
        """The lock a request holds on this process's channel. Forked: the parent's channel
        is not this process's, and its lock may be held by a thread that is not here."""
        if self._pid != os.getpid():
            self._channel, self._pid = None, os.getpid()
            self._exchange = threading.Lock()
        return self._exchange

    def channel(self) -> ControlChannel:
        """This process's control channel on the broker (opened on first use); a request on
        it holds `_turn()`."""
        self._turn()
        if self._channel is None:
            channel = self._broker().control_channel(self._secret)
            if channel is None:
                raise ConfigurationError("this broker carries no control")
            self._channel = channel
        return self._channel

    def close(self) -> None:
        with self._turn():  # not under a request of another thread
            if self._channel is not None:
                self._channel.close()
            self._channel = None


def _check(command: str, destination: Sequence[str] | None, timeout: float) -> None:
    if not command:
        raise ConfigurationError("control: give a command")
    if isinstance(destination, str):
        raise ConfigurationError("control: destination is a list of worker names, not a string")
    if destination is not None and not (destination and all(destination)):
        raise ConfigurationError("control: destination must name workers (None: every one)")
    if not (0 < timeout < math.inf):
        raise ConfigurationError(f"control: timeout must be a number of seconds > 0, not {timeout}")
