"""The in-process store every `memory://NAME` broker of one process shares, and the changes
its broker and sessions make to it (each under the store's condition)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Collection

import msgspec

from forkq.engines.contract import Consumer, DeadLetter, DeadLetterCaps, Delivery


class Entry(msgspec.Struct):
    queue: str
    body: bytes
    priority: int
    visible_at: float
    deliveries: int = 0
    owner: str | None = None
    worker: str | None = None
    lease_until: float = 0.0

    def free(self, now: float) -> bool:
        return self.owner is None or self.lease_until < now


class Store(msgspec.Struct):
    cond: threading.Condition = msgspec.field(default_factory=threading.Condition)
    messages: dict[int, Entry] = msgspec.field(default_factory=dict)
    dead: dict[str, dict[int, DeadLetter]] = msgspec.field(default_factory=dict)  # by queue,
    # oldest first
    ids: itertools.count[int] = msgspec.field(default_factory=lambda: itertools.count(1))
    seen: dict[tuple[str, str], float] = msgspec.field(default_factory=dict)  # (queue, worker)

    def held(self, consumer: Consumer, receipt: str) -> Entry | None:
        entry = self.messages.get(int(receipt))
        return entry if entry is not None and entry.owner == consumer.name else None

    def ack(self, consumer: Consumer, receipts: Collection[str]) -> None:
        for receipt in receipts:
            if self.held(consumer, receipt):
                del self.messages[int(receipt)]

    def hold(self, consumer: Consumer, msg_id: int, now: float, lease_ttl: float) -> Delivery:
        entry = self.messages[msg_id]
        entry.owner, entry.worker = consumer.name, consumer.worker
        entry.lease_until = now + lease_ttl
        entry.deliveries += 1
        return Delivery(str(msg_id), entry.queue, entry.body, entry.deliveries)

    def unhold(self, entry: Entry, counted: bool) -> None:
        entry.owner = entry.worker = None
        if not counted:
            entry.deliveries = max(0, entry.deliveries - 1)
        self.cond.notify_all()

    def bury(self, msg_id: int, reason: str, caps: DeadLetterCaps) -> None:
        """The one place a letter is added: then the queue's oldest beyond the caps go."""
        entry, now = self.messages.pop(msg_id), time.time()
        letters, dead_id = self.dead.setdefault(entry.queue, {}), next(self.ids)
        letters[dead_id] = DeadLetter(
            str(dead_id), entry.queue, entry.body, reason, now, entry.priority
        )
        while caps.max_count and len(letters) > caps.max_count:
            del letters[next(iter(letters))]
        while (
            caps.max_age and letters and letters[next(iter(letters))].failed_at < now - caps.max_age
        ):
            del letters[next(iter(letters))]

    def release(self, consumer: Consumer, running: Collection[str]) -> int:
        count = 0
        for msg_id, entry in self.messages.items():
            if entry.owner == consumer.name:
                self.unhold(entry, counted=str(msg_id) in running)
                count += 1
        return count


STORES: dict[str, Store] = {}
