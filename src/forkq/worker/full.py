"""A task's outcome kept in its child while the broker or result backend is full, or while a
result backend apart from the broker cannot be reached.

A server that refuses a write for want of room (`ServerFull`: Redis over maxmemory, RabbitMQ
blocking publishers past the bounded wait) wrote nothing of it, and stays full until someone
frees room. A result backend that cannot be reached (`BackendUnavailable`: only a backend apart
from the broker fails so; a shared one fails as the broker) fails every run's store alike
while the broker, and so the message's hold, stays fine. Leaving, as the child does for any
other failure mid-task (consume.py), would have the task run again each time, charged a start
each time (`max_deliveries` would then end it as WorkerLost, though nothing was wrong with it).
So the finish is tried again with back-off, the outcome in memory, the message not acked
before its result is stored; a child killed meanwhile is released as ever (at least once). A
store sent before a timeout may still land: a write of the same run again changes nothing,
and one of an older run never overwrites a newer one's (the result's fence). A STARTED record
the server has no room for is left out, the task run all the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from forkq.exceptions import BackendUnavailable, ServerFull
from forkq.outage import Outage

log = logging.getLogger("forkq.worker")


def finish_when_room(finish: Callable[[], None]) -> None:
    """`finish()`, again after a back-off (logged once, and when it works again) for as long
    as it raises `ServerFull` or `BackendUnavailable`."""
    full: Outage | None = None
    while True:
        try:
            finish()
        except (ServerFull, BackendUnavailable) as exc:
            full = full or Outage("storing a task's outcome", log)
            time.sleep(full.failed(exc))
            continue
        if full is not None:
            full.succeeded()
        return


def unless_full(write: Callable[[], None], what: str) -> None:
    """`write()`, left out when the server is full: for a record that only informs (a task's
    STARTED), so that the task still runs; its outcome then waits in `finish_when_room`."""
    try:
        write()
    except ServerFull as exc:
        log.debug("%s left out: %s", what, exc)
