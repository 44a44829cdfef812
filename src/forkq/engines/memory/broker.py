"""In-process broker for eager mode and unit tests: `memory://NAME`.

Every `MemoryBroker` opened with the same URL in one process shares one store (`store.py`).
Nothing crosses `fork()`, so a prefork worker cannot use it.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence

from forkq.engines.contract import (
    DEFAULT_DEAD_CAPS,
    PRIORITY_BANDS,
    Broker,
    Capabilities,
    Consumer,
    ConsumerSession,
    DeadLetter,
    DeadLetterCaps,
    Leftovers,
    Outgoing,
    QueueDepth,
    Recovery,
    ResultBackend,
    ScheduleStore,
    Sighting,
    lease_ttl_from_url,
    outgoing,
    priority_band,
)
from forkq.engines.memory.schedules import MemorySchedules
from forkq.engines.memory.session import MemorySession
from forkq.engines.memory.store import STORES, Entry, Store


class MemoryBroker(Broker):
    capabilities = Capabilities(Recovery.LEASE, across_processes=False)

    def __init__(
        self, url: str = "memory://", dead_caps: DeadLetterCaps = DEFAULT_DEAD_CAPS
    ) -> None:
        super().__init__()
        self._name = url.partition("?")[0]
        self._store = STORES.setdefault(self._name, Store())
        self.lease_ttl = lease_ttl_from_url(url)
        self.dead_caps = dead_caps

    def publish(self, messages: Sequence[Outgoing]) -> None:
        s, now = self._store, time.time()
        with s.cond:
            for m in messages:
                s.messages[next(s.ids)] = Entry(m.queue, m.body, m.priority, now + m.delay)
            s.cond.notify_all()

    def _open_session(self, consumer: Consumer, results: ResultBackend) -> ConsumerSession:
        return MemorySession(
            consumer, results, self.capabilities, self._store, self.lease_ttl, self.dead_caps
        )

    def _release(self, consumer: Consumer, leftovers: Leftovers) -> int:
        s = self._store
        with s.cond:
            s.ack(consumer, [receipt for _, receipt in leftovers.finished])
            for verdict in leftovers.dead:
                if s.held(consumer, verdict.receipt):
                    s.bury(int(verdict.receipt), verdict.reason, self.dead_caps)
            return s.release(consumer, leftovers.running)

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

    def _purge(self, queue: str) -> int:
        s = self._store
        with s.cond:
            doomed = [i for i, e in s.messages.items() if e.queue == queue and e.owner is None]
            for msg_id in doomed:
                del s.messages[msg_id]
        return len(doomed)

    def _size(self, queue: str) -> int:
        return self._depth(queue).messages

    def _depth(self, queue: str) -> QueueDepth:
        now = time.time()
        with self._store.cond:
            mine = [e for e in self._store.messages.values() if e.queue == queue]
        waiting = [e for e in mine if e.owner is None and e.visible_at > now]
        bands = [0] * len(PRIORITY_BANDS)
        for entry in mine:
            if not (entry.owner is None and entry.visible_at > now):
                bands[priority_band(entry.priority)] += 1
        return QueueDepth(len(mine), len(waiting), tuple(bands))

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
        self.publish([outgoing(d.queue, d.body, d.priority) for d in chosen])
        return len(chosen)

    def delete_dead(self, receipts: Collection[str]) -> int:
        with self._store.cond:
            doomed = [d for d in self._letters() if d.receipt in receipts]
            for dead in doomed:
                del self._store.dead[dead.queue][int(dead.receipt)]
        return len(doomed)

    def purge_dead(self, queue: str | None = None) -> int:
        with self._store.cond:
            doomed = [d for d in self._letters() if queue in (None, d.queue)]
            for dead in doomed:
                del self._store.dead[dead.queue][int(dead.receipt)]
        return len(doomed)

    def schedule_store(self) -> ScheduleStore:
        return MemorySchedules(self._name, self._store.cond, self.publish, atomic=True)

    def _close(self) -> None:
        pass
