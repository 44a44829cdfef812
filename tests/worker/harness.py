"""An executor on the memory engine, in this process, with its child's slot and session."""

from __future__ import annotations

import uuid
from typing import Any

from forkq import Forkq
from forkq.engines.contract import Consumer, Delivery, outgoing
from forkq.envelope import Message
from forkq.pool.scoreboard import Scoreboard
from forkq.result import decode_record
from forkq.task import Task
from forkq.worker.executor import Executor

CONSUMER = Consumer.of_child("w", 0, 1)


class Harness:
    def __init__(self, url: str | None = None, **settings: Any) -> None:
        url = url or f"memory://{uuid.uuid4().hex}"
        self.app = Forkq("t", broker=url, **settings)
        self.scoreboard = Scoreboard(1)
        self.session = self.app.broker.consumer(CONSUMER, self.app.backend)
        self.executor = Executor(self.app, self.session, self.scoreboard.writer(0))
        self.queue = self.app.settings.default_queue

    def fetch(self) -> Delivery:
        [delivery] = self.session.fetch([self.queue], 1, 0)
        return delivery

    def publish(self, body: bytes) -> None:
        self.app.broker.publish([outgoing(self.queue, body)])

    def child_died_holding(self, delivery: Delivery) -> None:
        """What the master does when the child handling `delivery` dies."""
        self.session.release(running=[delivery.receipt])

    def run_next(self) -> None:
        self.executor.handle(self.fetch())

    def drain(self, most: int = 1_000) -> int:
        """Run what the queue holds, and what that sends, until it is empty: how many ran."""
        for ran in range(most):
            held = self.session.fetch([self.queue], 1, 0)
            if not held:
                return ran
            self.executor.handle(held[0])
        raise AssertionError(f"the queue still holds messages after {most} ran")

    def sent(self) -> list[Message]:
        """The messages the queue holds, decoded, without running them (they stay held)."""
        held = self.session.fetch([self.queue], 10_000, 0)
        return [self.app.codec.decode(d.body) for d in held]

    def record(self, task_id: str) -> Any:
        stored = self.app.backend.get(task_id)
        return None if stored is None else decode_record(stored.payload)

    def dead_reasons(self) -> list[str]:
        return [d.reason for d in self.app.broker.dead_letters()]


def task(h: Harness, fn: Any, **options: Any) -> Task:
    options.setdefault("name", fn.__name__)
    return h.app.task(**options)(fn)
