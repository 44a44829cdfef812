"""What a master does when told to over its control socket (`forkq control`, relayed by the
worker's agent from the broker): resize the pool, stop warm, change the queues it consumes.

Each handler acts at once and replies; nothing here waits or touches a child. The pool's size
changes as TTIN and TTOU change it (`Master.manage` forks or retires idle children on its next
turn); the queues are posted on the bulletin, which each child reads before its next fetch
(`worker/consume.py`); a warm stop is TERM's. Bad arguments raise `BadArguments`, which the
client sees as the worker's error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from forkq.pool.bulletin import Bulletin, QueuesTooLong
from forkq.pool.control import BadArguments

log = logging.getLogger("forkq.master")

MAX_QUEUE_NAME = 200


class PoolControl(Protocol):
    """What the commands act on (the master)."""

    bulletin: Bulletin
    concurrency: int
    stopping: bool

    def resize(self, by: int, source: str) -> None: ...

    def stop_warm(self) -> None: ...


def pool_grow(pool: PoolControl, args: Mapping[str, Any]) -> dict[str, Any]:
    before = pool.concurrency
    pool.resize(_count(args), "control")
    return {"concurrency": pool.concurrency, "was": before}


def pool_shrink(pool: PoolControl, args: Mapping[str, Any]) -> dict[str, Any]:
    before = pool.concurrency
    pool.resize(-_count(args), "control")
    return {"concurrency": pool.concurrency, "was": before}


def shutdown(pool: PoolControl, args: Mapping[str, Any]) -> dict[str, Any]:
    """Warm: running tasks finish (within the shutdown timeout), then the worker exits."""
    stopping = pool.stopping
    pool.stop_warm()
    return {"shutdown": "already stopping" if stopping else "warm"}


def add_queue(pool: PoolControl, args: Mapping[str, Any]) -> dict[str, Any]:
    queue, queues = _queue(args), pool.bulletin.posted.queues
    if queue in queues:
        return {"queues": list(queues), "changed": False}
    return _post(pool, (*queues, queue), f"consuming {queue} too")


def cancel_queue(pool: PoolControl, args: Mapping[str, Any]) -> dict[str, Any]:
    queue, queues = _queue(args), pool.bulletin.posted.queues
    if queue not in queues:
        return {"queues": list(queues), "changed": False}
    if len(queues) == 1:
        raise BadArguments(f"{queue} is the only queue this worker consumes: add another first")
    return _post(pool, tuple(q for q in queues if q != queue), f"no longer consuming {queue}")


def _post(pool: PoolControl, queues: tuple[str, ...], what: str) -> dict[str, Any]:
    try:
        pool.bulletin.post_queues(queues)
    except QueuesTooLong as exc:
        raise BadArguments(str(exc)) from None
    log.info("control: %s; queues now %s", what, ",".join(queues))
    return {"queues": list(queues), "changed": True}


def _count(args: Mapping[str, Any]) -> int:
    n = args.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise BadArguments(f"n must be a whole number from 1, not {n!r}")
    return n


def _queue(args: Mapping[str, Any]) -> str:
    queue = args.get("queue")
    if not isinstance(queue, str) or not 0 < len(queue) <= MAX_QUEUE_NAME or "\n" in queue:
        raise BadArguments(f"queue must be a name of 1 to {MAX_QUEUE_NAME} characters")
    return queue
