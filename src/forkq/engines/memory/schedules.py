"""Schedules' lease and records in this process's memory (`memory://NAME`): for tests and
eager mode. The broker's store records and publishes under the store's lock, at once; the
result backend's records, then publishes through the broker it is given."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence

import msgspec

from forkq.engines.contract import (
    Fire,
    FireRecord,
    Lease,
    Publish,
    ScheduleStore,
    record_then_publish,
)


class ScheduleState(msgspec.Struct):
    """What the stores of one URL share: leases by name, records by schedule."""

    leases: dict[str, Lease] = msgspec.field(default_factory=dict)
    records: dict[str, FireRecord] = msgspec.field(default_factory=dict)


STATES: dict[str, ScheduleState] = {}


class MemorySchedules(ScheduleStore):
    def __init__(
        self, url: str, lock: threading.Condition, publish: Publish, *, atomic: bool
    ) -> None:
        self._state = STATES.setdefault(url, ScheduleState())
        self._lock, self._publish, self.atomic = lock, publish, atomic

    def hold(self, lease: str, holder: str, ttl: float) -> bool:
        now = time.time()
        with self._lock:
            held = self._state.leases.get(lease)
            if held is None or held.holder == holder or held.until < now:
                self._state.leases[lease] = Lease(holder, now + ttl)
                return True
            return False

    def release(self, lease: str, holder: str) -> None:
        with self._lock:
            held = self._state.leases.get(lease)
            if held is not None and held.holder == holder:
                del self._state.leases[lease]

    def leader(self, lease: str) -> Lease | None:
        with self._lock:
            held = self._state.leases.get(lease)
        return held if held is not None and held.until >= time.time() else None

    def fire(self, fires: Sequence[Fire]) -> list[bool]:
        if not self.atomic:
            return record_then_publish(fires, self._claim, self._unclaim, self._publish)
        with self._lock:  # the broker's: its publish takes it again (a re-entrant lock)
            done = [self._claim(f)[0] for f in fires]
            sent = [f.message for f, new in zip(fires, done, strict=True) if new and f.message]
            if sent:
                self._publish(sent)
        return done

    def _claim(self, f: Fire) -> tuple[bool, FireRecord | None]:
        with self._lock:
            before = self._state.records.get(f.schedule)
            if before is not None and before.due_ms >= f.due_ms:
                return False, before
            fired_at = int(time.time() * 1000)
            self._state.records[f.schedule] = FireRecord(f.due_ms, fired_at, f.task_id)
            return True, before

    def _unclaim(self, f: Fire, before: FireRecord | None) -> None:
        with self._lock:
            now = self._state.records.get(f.schedule)
            if now is None or (now.due_ms, now.task_id) != (f.due_ms, f.task_id):
                return
            if before is None:
                del self._state.records[f.schedule]
            else:
                self._state.records[f.schedule] = before

    def records(self, queues: Mapping[str, str]) -> dict[str, FireRecord]:
        with self._lock:
            found = {name: self._state.records.get(name) for name in queues}
        return {name: record for name, record in found.items() if record is not None}
