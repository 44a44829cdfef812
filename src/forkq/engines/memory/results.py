"""In-process result backend for eager mode and unit tests: `memory://NAME`."""

from __future__ import annotations

import threading
import time

from forkq.engines.contract import ResultBackend, StoredResult
from forkq.states import READY_STATES

_LOCK = threading.Condition()
_STORES: dict[str, dict[str, tuple[StoredResult, float]]] = {}
_STARTS: dict[str, dict[str, tuple[int, float]]] = {}


class MemoryBackend(ResultBackend):
    def __init__(self, url: str = "memory://") -> None:
        self._rows = _STORES.setdefault(url, {})
        self._starts = _STARTS.setdefault(url, {})

    def store(self, task_id: str, state: str, payload: bytes, ttl: float) -> None:
        with _LOCK:
            self._rows[task_id] = (StoredResult(state, payload), time.time() + ttl)
            _LOCK.notify_all()

    def get(self, task_id: str) -> StoredResult | None:
        with _LOCK:
            row = self._rows.get(task_id)
        return row[0] if row is not None and row[1] >= time.time() else None

    def wait(self, task_id: str, timeout: float) -> StoredResult | None:
        deadline = time.monotonic() + timeout
        with _LOCK:
            while True:
                result = self.get(task_id)
                remaining = deadline - time.monotonic()
                if (result is not None and result.state in READY_STATES) or remaining <= 0:
                    return result
                _LOCK.wait(remaining)

    def forget(self, task_id: str) -> None:
        with _LOCK:
            self._rows.pop(task_id, None)

    def count_start(self, key: str, ttl: float) -> int:
        now = time.time()
        with _LOCK:
            count, until = self._starts.get(key, (0, now))
            count = count + 1 if until > now else 1
            self._starts[key] = (count, now + ttl)
        return count

    def forget_starts(self, key: str) -> None:
        with _LOCK:
            self._starts.pop(key, None)

    def close(self) -> None:
        pass
