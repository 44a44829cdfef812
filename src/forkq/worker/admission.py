"""Rate and concurrency limits in a child, between accepting a message and running its task.

    accepted ─► task.options.throttle? ── None ──────────────────────────────► run
                  │ a Throttle
                  ├─► concurrency: take_slot(task, bucket, task id, N, lease)
                  │       └─ all held: the back-off ─────────────────────────► requeue
                  ├─► rate: take_rate(task, bucket, interval, task id)
                  │       └─ a slot ahead: its wait (the slot above let go) ──► requeue
                  └─► run ─► let_go: the slot goes when the run ends, before a retry is published

A requeued message waits in the broker for the time it was told (delayed, as a countdown is),
is not counted as a run nor as a retry, and the child moves on at once; when it comes back it
takes again: its reservation is due, or its back-off has grown. The slot is taken first, so
that a rate slot is only taken by a task that can run; a task held back by its rate lets its
concurrency slot go. One round trip each, to the result backend.

A slot is keyed by the task id, so a redelivered task (its process died) takes its own slot
again, and leases it anew; a slot no one lets go (a whole worker lost, a child killed for its
hard time limit) expires with its lease: the hard time limit and `LEASE_MARGIN`, or the task's
`concurrency_lease`. A message rejected after it was accepted (too many deliveries, killed for
its time limit) may hold a slot from the process that died running it: it is let go then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from forkq.engines.contract import ResultBackend
from forkq.envelope import Message
from forkq.exceptions import MessageRejected
from forkq.task import Task
from forkq.throttle import Throttle
from forkq.worker.limits import TimeLimits

log = logging.getLogger("forkq.worker")

LEASE_MARGIN = 5.0  # seconds a slot outlives a task's hard time limit: the master's kill


class Admission:
    """The child's limits: its backend (the session's) and its time limits (for leases)."""

    def __init__(self, results: ResultBackend, limits: TimeLimits) -> None:
        self.results = results
        self.limits = limits

    def wait(self, throttle: Throttle, task: Task, message: Message) -> float:
        """0 when the task may run now (its slot taken), else the seconds it is to wait in the
        broker. A key function that fails rejects the message: it could never run."""
        slots = rate = None
        if throttle.concurrency is not None:
            slots = self._bucket(throttle.concurrency_bucket, "concurrency_key", task, message)
        if throttle.rate is not None:
            rate = self._bucket(throttle.rate_bucket, "rate_limit_key", task, message)
        if slots is not None and throttle.concurrency is not None:
            lease = self._lease(throttle, task)
            wait = self.results.take_slot(task.name, slots, message.id, throttle.concurrency, lease)
            if wait > 0:
                log.debug("%s[%s]: every slot held, back in %.3fs", task.name, message.id, wait)
                return wait
        if rate is not None and throttle.rate is not None:
            wait = self.results.take_rate(task.name, rate, throttle.rate.interval, message.id)
            if wait > 0:
                if slots is not None:
                    self.results.release_slot(task.name, slots, message.id)
                log.debug("%s[%s]: its rate slot is in %.3fs", task.name, message.id, wait)
                return wait
        return 0.0

    def let_go(self, throttle: Throttle, task: Task, message: Message) -> None:
        """The task's run ended, or never will: its concurrency slot goes (if it holds one)."""
        if throttle.concurrency is None:
            return
        try:
            bucket = throttle.concurrency_bucket(message)
        except Exception:  # its lease ends it
            log.exception("%s[%s]: concurrency_key failed; the slot expires", task.name, message.id)
            return
        self.results.release_slot(task.name, bucket, message.id)

    def _lease(self, throttle: Throttle, task: Task) -> float:
        hard = self.limits.for_task(task).hard
        return hard + LEASE_MARGIN if hard else throttle.lease

    def _bucket(
        self, bucket: Callable[[Message], str], option: str, task: Task, message: Message
    ) -> str:
        """The call's bucket. A key function that raises rejects the message (the executor
        then lets go of its unique lock: it will never run)."""
        try:
            return bucket(message)
        except Exception as exc:
            raise MessageRejected(
                f"task {task.name}: {option} failed on the call's arguments: "
                f"{type(exc).__name__}: {exc}",
                message.id,
            ) from exc
