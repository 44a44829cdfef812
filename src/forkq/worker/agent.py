"""The agent: a worker's companion process (`pool/companion.py`) that answers control
requests coming over the broker (`forkq inspect`, `forkq control`, `app.control`).

    master ─fork─► agent: its own broker connection ─► channel.listen(name, worker id):
                   subscribed, then announced (a member: expected to answer)
    loop:  announce again when due ─► wait for a request (TERM interrupts the wait)
           ─► its own command (agent_commands.py: registered, conf, scheduled, revoked)
           ─► any other: relayed to the master over its control socket (`pool.control.ask`),
              whose reply, or error, goes back as it is
    leave: (TERM: the worker stops, warm or for a HUP) withdraw: no longer expected

Why a process of its own: the master is one selector loop that never waits on the network,
and children are never interrupted to answer. The agent waits on the broker; what it relays
costs the master one local-socket round trip, answered from the scoreboard and `/proc`. An
outage of the broker is logged once and backed off; the agent subscribes again when it ends.
One agent per worker; none with `--no-control` or on a broker that carries no control.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from forkq.app import Forkq
from forkq.engines.contract import ControlChannel, ControlRequest
from forkq.exceptions import BrokerError
from forkq.outage import Outage
from forkq.pool.bulletin import BulletinReader
from forkq.pool.child import Stopping, StopSignal
from forkq.pool.control import BadArguments, ask, socket_name
from forkq.pool.control_dir import ControlDir, ForeignSocket, open_worker_dir
from forkq.worker.agent_commands import COMMANDS

log = logging.getLogger("forkq.agent")

RELAY_TIMEOUT = 5.0  # seconds the master may take to answer a relayed command


class Agent:
    """One worker's agent; `run` until stopped. Also its commands' view of the worker."""

    def __init__(
        self, app: Forkq, name: str, worker_id: str, master_pid: int, bulletin: BulletinReader
    ) -> None:
        self.app, self.name, self.worker_id = app, name, worker_id
        self.master_pid = master_pid
        self._bulletin = bulletin
        self.outage = Outage("broker (from the control agent)", log)
        self._listening = False
        self._next_announce = 0.0  # monotonic

    @property
    def queues(self) -> tuple[str, ...]:
        return self._bulletin.read().queues

    def run(self, stop: StopSignal) -> int:
        channel = self.app.broker.control_channel(self.app.settings.secret)
        if channel is None:
            log.error("the broker carries no control: no agent")
            return 0
        with open_worker_dir() as directory:
            try:
                while not stop.requested:
                    self.step(channel, directory, stop)
            except Stopping:
                pass
            finally:
                self.leave(channel)
        return 0

    def step(self, channel: ControlChannel, directory: ControlDir, stop: StopSignal) -> None:
        """Listen or announce when due, then wait for one request and answer it; an outage
        is logged once and backed off, never fatal."""
        try:
            if not self._listening:
                channel.listen(self.name, self.worker_id)
                self._listening = True
                self._next_announce = time.monotonic() + channel.refresh_every
                log.info("control agent of %s listening", self.name)
            elif time.monotonic() >= self._next_announce:
                channel.announce()
                self._next_announce = time.monotonic() + channel.refresh_every
            with stop.interruptible():
                request = channel.receive(max(0.0, self._next_announce - time.monotonic()))
            if request is not None:
                channel.reply(request, self.answer(request, directory))
        except BrokerError as exc:
            pause = self.outage.failed(exc)
            with stop.interruptible():
                time.sleep(pause)
        else:
            self.outage.succeeded()

    def answer(self, request: ControlRequest, directory: ControlDir) -> Mapping[str, Any]:
        """The reply's body: from the agent's own command, else from the master."""
        own = COMMANDS.get(request.command)
        if own is None:
            return self.relay(request, directory)
        try:
            return own(self, request.args)
        except BadArguments as exc:
            return {"error": str(exc)}
        except BrokerError as exc:
            return {"error": f"{request.command}: {exc}"}
        except Exception as exc:  # a command's bug is this request's error, not the agent's end
            log.exception("control command %s failed", request.command)
            return {"error": f"{request.command} failed: {type(exc).__name__}: {exc}"}

    def relay(self, request: ControlRequest, directory: ControlDir) -> Mapping[str, Any]:
        timeout = min(RELAY_TIMEOUT, max(0.1, request.timeout))
        try:
            return ask(
                directory, socket_name(self.master_pid), request.command, timeout, request.args
            )
        except (OSError, ValueError, ForeignSocket) as exc:
            return {"error": f"the master did not answer {request.command}: {exc}"}

    def leave(self, channel: ControlChannel) -> None:
        """Withdraw (best effort: otherwise the worker is listed missing for a while)."""
        try:
            if self._listening:
                channel.withdraw()
        except BrokerError as exc:
            log.warning("control agent of %s could not withdraw: %s", self.name, exc)
        finally:
            channel.close()


class AgentProgram:
    """The agent as a worker's companion: forked from the master after the app is loaded and
    frozen; opens connections of its own."""

    label = "agent"

    def __init__(self, app: Forkq, name: str, worker_id: str, bulletin: BulletinReader) -> None:
        self.app, self.name, self.worker_id, self.bulletin = app, name, worker_id, bulletin

    def run_companion(self, stop: StopSignal) -> int:
        self.app.drop_inherited_connections()
        agent = Agent(self.app, self.name, self.worker_id, os.getppid(), self.bulletin)
        try:
            return agent.run(stop)
        finally:
            self.app.close()
