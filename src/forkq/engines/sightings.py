"""What a caller whose wait timed out is told about the workers of its task's queue, from the
workers' heartbeats (`Broker.consumers_seen`). Asked only after a timeout: it costs a round
trip, and a broker that cannot answer makes it say nothing rather than hide the timeout."""

from __future__ import annotations

import logging
from collections.abc import Callable

from forkq.engines.contract import Broker

log = logging.getLogger("forkq.client")


def who_consumes(broker: Callable[[], Broker], queue: str, where: str) -> str:
    """'no worker has consumed queue ...' or 'N workers consume queue ...' (`where`: the
    broker, as people see it); '' when the broker cannot say."""
    try:
        opened = broker()
        within = opened.lease_ttl  # workers beat every third of it: three beats
        seen = opened.consumers_seen(queue, within)
    except Exception as exc:  # a hint must never replace the timeout
        log.debug("cannot tell who consumes %r: %s", queue, exc)
        return ""
    if not seen:
        return (
            f"no worker has consumed queue {queue!r} on {where} in the last {within:g} s: "
            f"start one (forkq worker -Q {queue}) with this broker"
        )
    workers = "1 worker consumes" if len(seen) == 1 else f"{len(seen)} workers consume"
    return (
        f"{workers} queue {queue!r} on {where} (seen in the last {within:g} s): the task may "
        "still be queued behind others, or running"
    )
