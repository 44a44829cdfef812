"""A consumer of the in-process broker. It keeps no acks back (`keeps_acks` is False): each
settle is a change to a dict, with nothing to save by waiting."""

from __future__ import annotations

import time
from collections.abc import Sequence

from forkq.engines.contract import (
    Capabilities,
    Consumer,
    ConsumerSession,
    DeadLetterCaps,
    Delivery,
    ResultBackend,
)
from forkq.engines.memory.store import Store

_LONGEST_WAIT = 0.05  # seconds: bounds a wait so that a delayed message is seen when due


class MemorySession(ConsumerSession):
    def __init__(
        self,
        consumer: Consumer,
        results: ResultBackend,
        capabilities: Capabilities,
        store: Store,
        lease_ttl: float,
        dead_caps: DeadLetterCaps,
    ) -> None:
        super().__init__(consumer, results, capabilities)
        self._store = store
        self._lease_ttl = lease_ttl
        self._dead_caps = dead_caps
        self.unchallenged_for = lease_ttl / 2

    def _still_holds(self, delivery: Delivery) -> bool:
        with self._store.cond:
            return self._store.held(self.consumer, delivery.receipt) is not None

    def _send_acks(self, acks: list[Delivery]) -> None:
        with self._store.cond:
            self._store.ack(self.consumer, [d.receipt for d in acks])

    def _fetch(
        self, acks: list[Delivery], queues: Sequence[str], limit: int, timeout: float
    ) -> list[Delivery]:
        self._send_acks(acks)
        s, deadline = self._store, time.monotonic() + timeout
        with s.cond:
            while True:
                now = time.time()
                ready = sorted(
                    (-e.priority, e.visible_at, i)
                    for i, e in s.messages.items()
                    if e.queue in queues and e.visible_at <= now and e.free(now)
                )[:limit]
                if ready:
                    return [s.hold(self.consumer, i, now, self._lease_ttl) for _, _, i in ready]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                s.cond.wait(min(remaining, _LONGEST_WAIT))

    def _requeue(self, acks: list[Delivery], delivery: Delivery, delay: float) -> None:
        self._send_acks(acks)
        with self._store.cond:
            entry = self._store.held(self.consumer, delivery.receipt)
            if entry:
                entry.visible_at = time.time() + max(0.0, delay)
                self._store.unhold(entry, counted=False)

    def _dead_letter(self, acks: list[Delivery], delivery: Delivery, reason: str) -> None:
        self._send_acks(acks)
        with self._store.cond:
            if self._store.held(self.consumer, delivery.receipt):
                self._store.bury(int(delivery.receipt), reason, self._dead_caps)

    def _release(self, acks: list[Delivery], running: Sequence[str]) -> int:
        self._send_acks(acks)
        with self._store.cond:
            return self._store.release(self.consumer, running)
