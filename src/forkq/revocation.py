"""Revoking tasks, from a client: the ids stored where every worker reads them, then the running
workers told.

    Forkq.revoke(ids, terminate, signal, ttl)
      ─► the signal checked (pool/revoke.py: one that ends a child)
      ─► app.backend.revoke(ids, ttl)          first: a worker that is down, partitioned or
                                               not started yet honours it when it reads them
      ─► tell_workers(app, "revoke", {...})    the running masters post it on their bulletin,
                                               and with terminate signal the child running it

Revoked ids are kept `revocation_ttl` seconds by default: the longest delay a message may
carry (`MAX_DELAY`, 100 years: forkq refuses longer ones when they are sent) plus the result
TTL, so a message revoked while it waits for its eta is still revoked when it comes due. So in
practice a revocation stays until `REVOKED_MAX` newer ones push it out (the oldest go first).
`ttl=` shortens it, for a caller who knows the message's eta.

`tell_workers` is the one place that reaches running workers (`app.control`, see its docstring);
`current_revocations` is what `forkq inspect revoked` shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from forkq.engines.contract import MAX_DELAY, Revocation
from forkq.exceptions import ConfigurationError, ForkqError, NoWorkerHere
from forkq.pool.revoke import MAX_IDS, terminating_signal
from forkq.settings import Settings

if TYPE_CHECKING:
    from forkq.app import Forkq

TELL_TIMEOUT = 2.0  # seconds each worker has to answer


class Told(msgspec.Struct, frozen=True):
    """What telling the running workers came to: each answer (a master's reply: its pid, and
    the tasks it terminated), and the workers that did not answer, each with why."""

    replies: tuple[dict[str, Any], ...] = ()
    silent: tuple[str, ...] = ()

    def __add__(self, other: Told) -> Told:
        return Told(self.replies + other.replies, self.silent + other.silent)

    @property
    def terminated(self) -> list[dict[str, Any]]:
        """The tasks ended: the pid of the child and the task id, as each master said."""
        return [t for reply in self.replies for t in reply.get("terminated", ())]


def revocation_ttl(settings: Settings) -> float:
    """How long a revocation is kept by default: past the latest moment the task's message can
    still come due (a delay of at most MAX_DELAY) and its result's TTL."""
    return MAX_DELAY + settings.result_ttl


def revoke(
    app: Forkq,
    task_ids: str | Iterable[str],
    *,
    terminate: bool = False,
    signal: str = "SIGTERM",
    ttl: float | None = None,
    timeout: float = TELL_TIMEOUT,
) -> Told:
    """Store the revocation of `task_ids`, then tell the running workers (see the module's
    docstring). Bad ids, signal or ttl: `ConfigurationError`, before anything is stored."""
    ids = list(dict.fromkeys([task_ids] if isinstance(task_ids, str) else task_ids))
    if not ids:
        raise ConfigurationError("revoke needs at least one task id")
    try:
        signum = terminating_signal(signal)
        app.backend.revoke(ids, revocation_ttl(app.settings) if ttl is None else ttl)
    except ValueError as exc:  # BadArguments is one
        raise ConfigurationError(str(exc)) from None
    told = Told()
    for start in range(0, len(ids), MAX_IDS):
        args = {"ids": ids[start : start + MAX_IDS], "terminate": terminate, "signal": signum.name}
        told += tell_workers(app, "revoke", args, timeout)
    return told


def current_revocations(app: Forkq) -> tuple[Revocation, ...]:
    """The revoked task ids in force, oldest first, each with its expiry (Unix time): what
    `forkq inspect revoked` shows (one read of the result backend)."""
    return app.backend.revocations().revoked


def tell_workers(app: Forkq, command: str, args: Mapping[str, Any], timeout: float) -> Told:
    """Send `command` with `args` to every running worker (`app.control.broadcast`: over the
    broker to every host, or through this host's control sockets where the broker carries no
    control); the answers, and the workers that did not answer or refused, each with why.
    A worker that is not told (down, partitioned) catches up through its children's backstop
    read of the revoked ids (worker/revoked.py); terminate reaches only the workers told."""
    try:
        got = app.control.broadcast(command, args, None, timeout)
    except NoWorkerHere:  # SQLite, and no worker runs on this host: none to tell
        return Told()
    except ForkqError as exc:  # an unsafe control directory: nothing there is trusted
        return Told(silent=(str(exc),))
    silent = [f"{name} did not answer" for name in got.missing]
    silent += [f"{name}: {why}" for name, why in got.errors.items()]
    replies = tuple(body for body in got.replies.values() if "error" not in body)
    return Told(replies, (*silent, *got.warnings))
