"""In-process result backend for eager mode and unit tests: `memory://NAME`."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from forkq.engines.contract import (
    ChordVote,
    Publish,
    ResultBackend,
    ResultWrite,
    ScheduleStore,
    StoredResult,
)
from forkq.engines.memory.schedules import MemorySchedules
from forkq.states import READY_STATES

_LOCK = threading.Condition()
_STORES: dict[str, dict[str, tuple[StoredResult, float]]] = {}
_STARTS: dict[str, dict[str, tuple[int, float]]] = {}
_CHORDS: dict[str, dict[str, _Chord]] = {}
_LOCKS: dict[str, dict[str, tuple[str, float]]] = {}


class _Chord:
    """A chord's count: the members counted, and the vote that fired (None: none yet)."""

    def __init__(self) -> None:
        self.members: set[str] = set()
        self.firing: str | None = None  # the member whose vote fired, until `fired`
        self.done = False
        self.until = 0.0


class MemoryBackend(ResultBackend):
    def __init__(self, url: str = "memory://") -> None:
        self._url = url
        self._rows = _STORES.setdefault(url, {})
        self._starts = _STARTS.setdefault(url, {})
        self._chords = _CHORDS.setdefault(url, {})
        self._locks = _LOCKS.setdefault(url, {})

    def store(self, task_id: str, state: str, payload: bytes, ttl: float) -> None:
        with _LOCK:
            self._rows[task_id] = (StoredResult(state, payload), time.time() + ttl)
            _LOCK.notify_all()

    def vote(self, writes: Sequence[ResultWrite], vote: ChordVote) -> bool:
        now = time.time()
        with _LOCK:
            for w in writes:
                self._rows[w.task_id] = (StoredResult(w.state, w.payload), now + w.ttl)
            chord = self._chords.get(vote.chord)
            if chord is None or chord.until < now:
                chord = self._chords[vote.chord] = _Chord()
            chord.until = now + vote.ttl
            if not vote.failed:
                chord.members.add(vote.member)
            due = vote.failed or len(chord.members) >= vote.size
            if due and not chord.done and chord.firing in (None, vote.member):
                chord.firing = vote.member
            fires = chord.firing == vote.member and not chord.done
            _LOCK.notify_all()
        return fires

    def fired(self, vote: ChordVote) -> None:
        with _LOCK:
            chord = self._chords.get(vote.chord)
            if chord is not None:
                chord.done = True

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

    def lock(self, key: str, holder: str, ttl: float) -> str | None:
        now = time.time()
        with _LOCK:
            held = self._locks.get(key)
            if held is not None and held[1] > now and held[0] != holder:
                return held[0]
            self._locks[key] = (holder, now + ttl)
        return None

    def unlock(self, key: str, holder: str) -> None:
        with _LOCK:
            held = self._locks.get(key)
            if held is not None and held[0] == holder:
                del self._locks[key]

    def schedule_store(self, publish: Publish) -> ScheduleStore:
        return MemorySchedules(self._url, _LOCK, publish, atomic=False)

    def close(self) -> None:
        pass
