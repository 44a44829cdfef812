"""In-process broker for eager mode and unit tests: `memory://NAME`.

Every `MemoryBroker` opened with the same URL in one process shares one store. Nothing
crosses `fork()`, so a prefork worker cannot use it.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Collection, Sequence

import msgspec

from forkq.engines.contract import (
    DEFAULT_DEAD_CAPS,
    Broker,
    Consumer,
    DeadLetter,
    DeadLetterCaps,
    Delivery,
    Sighting,
    check_fetch_args,
    lease_ttl_from_url,
)


class _Entry(msgspec.Struct):
    queue: str
    body: bytes
    priority: int
    visible_at: float
    deliveries: int = 0
    owner: str | None = None
    worker: str | None = None
    lease_until: float = 0.0


class _Store(msgspec.Struct):
    cond: threading.Condition = msgspec.field(default_factory=threading.Condition)
    messages: dict[int, _Entry] = msgspec.field(default_factory=dict)
    dead: dict[str, dict[int, DeadLetter]] = msgspec.field(default_factory=dict)  # by queue,
    # oldest first
    ids: itertools.count[int] = msgspec.field(default_factory=lambda: itertools.count(1))
    seen: dict[tuple[str, str], float] = msgspec.field(default_factory=dict)  # (queue, worker)


_STORES: dict[str, _Store] = {}


class MemoryBroker(Broker):
    def __init__(
        self, url: str = "memory://", dead_caps: DeadLetterCaps = DEFAULT_DEAD_CAPS
    ) -> None:
        self._store = _STORES.setdefault(url.partition("?")[0], _Store())
        self.lease_ttl = lease_ttl_from_url(url)
        self.dead_caps = dead_caps
        self.url = url

    def publish(self, queue: str, body: bytes, *, priority: int = 0, delay: float = 0.0) -> None:
        s = self._store
        with s.cond:
            entry = _Entry(queue, body, min(9, max(0, priority)), time.time() + max(0.0, delay))
            s.messages[next(s.ids)] = entry
            s.cond.notify_all()

    def fetch(
        self, consumer: Consumer, queues: Sequence[str], limit: int, timeout: float
    ) -> list[Delivery]:
        check_fetch_args(queues, limit)
        s, deadline = self._store, time.monotonic() + timeout
        with s.cond:
            while True:
                now = time.time()
                ready = sorted(
                    (
                        (-e.priority, e.visible_at, i)
                        for i, e in s.messages.items()
                        if e.queue in queues and e.visible_at <= now and self._free(e, now)
                    )
                )[:limit]
                if ready:
                    return [self._hold(consumer, i, now) for _, _, i in ready]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                s.cond.wait(min(remaining, 0.05))  # 50 ms bounds the wait for delayed messages

    def _free(self, entry: _Entry, now: float) -> bool:
        return entry.owner is None or entry.lease_until < now

    def _hold(self, consumer: Consumer, msg_id: int, now: float) -> Delivery:
        entry = self._store.messages[msg_id]
        entry.owner, entry.worker = consumer.name, consumer.worker
        entry.lease_until = now + self.lease_ttl
        entry.deliveries += 1
        return Delivery(str(msg_id), entry.queue, entry.body, entry.deliveries)

    def _held(self, consumer: Consumer, delivery: Delivery) -> _Entry | None:
        entry = self._store.messages.get(int(delivery.receipt))
        return entry if entry is not None and entry.owner == consumer.name else None

    def ack(self, consumer: Consumer, delivery: Delivery) -> None:
        with self._store.cond:
            if self._held(consumer, delivery):
                del self._store.messages[int(delivery.receipt)]

    def requeue(self, consumer: Consumer, delivery: Delivery, delay: float = 0.0) -> None:
        with self._store.cond:
            entry = self._held(consumer, delivery)
            if entry:
                entry.owner = entry.worker = None
                entry.visible_at = time.time() + max(0.0, delay)
                entry.deliveries = max(0, entry.deliveries - 1)
                self._store.cond.notify_all()

    def dead_letter(self, consumer: Consumer, delivery: Delivery, reason: str) -> None:
        s = self._store
        with s.cond:
            entry = self._held(consumer, delivery)
            if entry:
                del s.messages[int(delivery.receipt)]
                self._add_dead(entry, reason, time.time())

    def _add_dead(self, entry: _Entry, reason: str, now: float) -> None:
        """The one place a letter is added: then the queue's oldest beyond the caps go."""
        letters, dead_id = self._store.dead.setdefault(entry.queue, {}), next(self._store.ids)
        letters[dead_id] = DeadLetter(
            str(dead_id), entry.queue, entry.body, reason, now, entry.priority
        )
        caps = self.dead_caps
        while caps.max_count and len(letters) > caps.max_count:
            del letters[next(iter(letters))]
        while (
            caps.max_age and letters and letters[next(iter(letters))].failed_at < now - caps.max_age
        ):
            del letters[next(iter(letters))]

    def release(
        self,
        consumer_name: str,
        running: Collection[str] = (),
        finished: Collection[tuple[str, str]] = (),  # this engine keeps no acks back
    ) -> int:
        s, count = self._store, 0
        with s.cond:
            for msg_id, entry in s.messages.items():
                if entry.owner == consumer_name:
                    entry.owner = entry.worker = None
                    if str(msg_id) not in running:
                        entry.deliveries = max(0, entry.deliveries - 1)
                    count += 1
            s.cond.notify_all()
        return count

    def heartbeat(self, worker: str, queues: Sequence[str] = ()) -> None:
        with self._store.cond:
            now = time.time()
            for entry in self._store.messages.values():
                if entry.worker == worker:
                    entry.lease_until = now + self.lease_ttl
            self._store.seen.update({(queue, worker): now for queue in queues})

    def consumers_seen(self, queue: str, within: float) -> list[Sighting]:
        since = time.time() - within
        with self._store.cond:
            seen = [Sighting(w, t) for (q, w), t in self._store.seen.items() if q == queue]
        return sorted((s for s in seen if s.seen_at >= since), key=lambda s: -s.seen_at)

    def purge(self, queue: str) -> int:
        s = self._store
        with s.cond:
            doomed = [i for i, e in s.messages.items() if e.queue == queue and e.owner is None]
            for msg_id in doomed:
                del s.messages[msg_id]
        return len(doomed)

    def size(self, queue: str) -> int:
        with self._store.cond:
            return sum(1 for e in self._store.messages.values() if e.queue == queue)

    def dead_letters(self, queue: str | None = None, limit: int = 100) -> list[DeadLetter]:
        with self._store.cond:
            rows = [d for d in self._letters() if queue in (None, d.queue)]
        return sorted(rows, key=lambda d: int(d.receipt))[:limit]

    def _letters(self) -> list[DeadLetter]:
        return [d for letters in self._store.dead.values() for d in letters.values()]

    def requeue_dead(self, receipts: Collection[str] | None = None) -> int:
        with self._store.cond:
            chosen = [d for d in self._letters() if receipts is None or d.receipt in receipts]
            for dead in chosen:
                del self._store.dead[dead.queue][int(dead.receipt)]
        for dead in chosen:
            self.publish(dead.queue, dead.body, priority=dead.priority)
        return len(chosen)

    def purge_dead(self, queue: str | None = None) -> int:
        with self._store.cond:
            doomed = [d for d in self._letters() if queue in (None, d.queue)]
            for dead in doomed:
                del self._store.dead[dead.queue][int(dead.receipt)]
        return len(doomed)

    def close(self) -> None:
        pass
