"""The commands a worker's agent answers itself (`worker/agent.py`): what the app is, which
the pool cannot say (it knows processes, not tasks). Every other command goes to the master.
Where there is no agent (SQLite, `--no-control`), the master answers these on its control
socket (`bound`, handed to the pool as `PoolConfig.commands`): the same functions.

    registered  the tasks, each with the options it was given (those not at their default)
    conf        the settings, the secret and URL passwords shown as ***
    scheduled   the delayed messages of the queues consumed, where the broker lists them in
                one cheap read (Redis); elsewhere a reply that says it cannot
    revoked     the revoked task ids in force, with their expiry (revocation.py)

A handler takes the agent's view of its worker and the request's args and returns the reply's
body; bad args raise `BadArguments`, shown to the client as this worker's error.
"""

from __future__ import annotations

import enum
import functools
import types
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

import msgspec

from forkq.app import Forkq
from forkq.exceptions import MessageRejected
from forkq.pool.control import BadArguments, Handler
from forkq.revocation import current_revocations
from forkq.settings import redacted
from forkq.task_options import TaskOptions
from forkq.throttle import Rate

MAX_LISTED = 1000  # delayed messages listed per queue, at most
_DERIVED = ("name", "throttle")  # task options made from others, or the name itself


class AgentView(Protocol):
    """What a command may read of the agent's worker."""

    app: Forkq

    @property
    def queues(self) -> tuple[str, ...]:
        """The queues the worker consumes now."""
        ...


Command = Callable[[AgentView, Mapping[str, Any]], dict[str, Any]]


def registered(worker: AgentView, args: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "tasks": {name: options_shown(t.options) for name, t in sorted(worker.app.tasks.items())}
    }


def options_shown(options: TaskOptions) -> dict[str, Any]:
    """The options given to a task, as JSON: those not at their default."""
    given, default = _fields(options), _fields(TaskOptions(name=options.name))
    return {k: v for k, v in given.items() if k not in _DERIVED and v != default.get(k)}


def _fields(options: TaskOptions) -> dict[str, Any]:
    return {
        name: str(value) if isinstance(value, Rate) else msgspec.to_builtins(value, enc_hook=_shown)
        for name, value in msgspec.structs.asdict(options).items()
    }


def conf(worker: AgentView, args: Mapping[str, Any]) -> dict[str, Any]:
    settings = msgspec.to_builtins(worker.app.settings)
    if settings.get("secret"):
        settings["secret"] = "***"
    for url in ("broker_url", "result_backend"):
        if settings.get(url):
            settings[url] = redacted(settings[url])
    return {"settings": settings}


def scheduled(worker: AgentView, args: Mapping[str, Any]) -> dict[str, Any]:
    limit = args.get("limit", 100)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_LISTED:
        raise BadArguments(f"limit must be a whole number from 1 to {MAX_LISTED}, not {limit!r}")
    broker, listed = worker.app.broker, []
    for queue in worker.queues:
        delayed = broker.delayed(queue, limit)
        if delayed is None:
            return {"error": "this broker cannot list delayed messages in one cheap read"}
        for item in delayed:
            entry: dict[str, Any] = {
                "queue": queue,
                "due_at": item.due_at,
                "priority": item.priority,
            }
            try:
                message = worker.app.codec.decode(item.body)
            except MessageRejected as exc:
                entry["error"] = exc.reason
            else:
                entry.update(id=message.id, task=message.task, retries=message.retries)
            listed.append(entry)
    return {"scheduled": sorted(listed, key=lambda e: e["due_at"])}


REVOKED_SHOWN = 1000  # ids in a `revoked` reply by default: the newest


def revoked(worker: AgentView, args: Mapping[str, Any]) -> dict[str, Any]:
    """The newest revoked task ids in force (`limit`, 1,000 by default), as every worker reads
    them (the result backend), each with when its revocation expires (Unix time), and how many
    are in force: a reply stays far below a control message's size limit."""
    limit = args.get("limit", REVOKED_SHOWN)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= 50_000:
        raise BadArguments("limit must be a whole number from 1 to 50000")
    every = current_revocations(worker.app)
    return {
        "revoked": [{"id": r.task_id, "expires_at": r.expires_at} for r in every[-limit:]],
        "count": len(every),
    }


#: The agent's own commands; the rest are relayed to the master (`pool/inspection.handlers`).
COMMANDS: dict[str, Command] = {
    "registered": registered,
    "conf": conf,
    "scheduled": scheduled,
    "revoked": revoked,
}


def bound(worker: AgentView) -> dict[str, Handler]:
    """These commands, answering for `worker` (the master's view of it, where no agent is)."""
    return {name: functools.partial(command, worker) for name, command in COMMANDS.items()}


def _shown(value: Any) -> Any:
    """An option's value JSON cannot hold, as a person reads it."""
    if isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType)):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(value)
