"""In-process result backend for eager mode and unit tests: `memory://NAME`."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence

from forkq.engines.contract import (
    BACKOFF,
    RESERVATION_KEPT,
    REVOKED_MAX,
    Backoff,
    ChordVote,
    EventPage,
    Fence,
    Publish,
    RateState,
    ResultBackend,
    ResultWrite,
    Revocation,
    Revocations,
    ScheduleStore,
    StoredEvent,
    StoredResult,
    check_event_reading,
    check_events_kept,
    check_interval,
    check_revocation,
    decide_rate,
    fenced_off,
)
from forkq.engines.memory.schedules import MemorySchedules
from forkq.states import READY_STATES

_LOCK = threading.Condition()
_STORES: dict[str, dict[str, tuple[StoredResult, float]]] = {}
_STARTS: dict[str, dict[str, tuple[int, float]]] = {}
_FENCES: dict[str, dict[str, Fence]] = {}  # each record's last run past a first
_CHORDS: dict[str, dict[str, _Chord]] = {}
_LOCKS: dict[str, dict[str, tuple[str, float]]] = {}
_LIMITS: dict[str, _Limits] = {}
_REVOKED: dict[str, _Revoked] = {}
_EVENTS: dict[str, _Events] = {}


class _Revoked:
    """One URL's revocations: task id -> (its number, its expiry), oldest number first."""

    def __init__(self) -> None:
        self.seq = 0
        self.ids: dict[str, tuple[int, float]] = {}


class _Events:
    """One URL's events: offset -> body, oldest first, offsets counting up from 1."""

    def __init__(self) -> None:
        self.last = 0
        self.kept: dict[int, bytes] = {}


def _offset(after: str | None) -> int:
    if not after:
        return 0
    if not (after.isascii() and after.isdigit()) or len(after) > 19:
        raise ValueError(f"an event offset here is a whole number, not {after[:40]!r}")
    return int(after)


class _Limits:
    """One URL's rate buckets and concurrency slots (see `forkq.engines.contract.limits`)."""

    def __init__(self) -> None:
        self.rates: dict[tuple[str, str], RateState] = {}
        self.reservations: dict[tuple[str, str, str], tuple[float, float]] = {}  # slot, until
        self.overrides: dict[str, float] = {}
        self.slots: dict[tuple[str, str], dict[str, float]] = {}  # holder: lease end
        self.backoffs: dict[tuple[str, str, str], tuple[float, float]] = {}  # base, until


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
        self._fences = _FENCES.setdefault(url, {})
        self._chords = _CHORDS.setdefault(url, {})
        self._locks = _LOCKS.setdefault(url, {})
        self._limits = _LIMITS.setdefault(url, _Limits())
        self._revoked = _REVOKED.setdefault(url, _Revoked())

    def store(
        self, task_id: str, state: str, payload: bytes, ttl: float, fence: Fence | None = None
    ) -> None:
        with _LOCK:
            self._write(ResultWrite(task_id, state, payload, ttl, fence), time.time())
            _LOCK.notify_all()

    def _write(self, w: ResultWrite, now: float) -> None:
        """One write, fenced by its run (`ResultBackend.store`), under _LOCK."""
        row = self._rows.get(w.task_id)
        if row is None or row[1] < now:  # an expired record's fence went with it
            self._fences.pop(w.task_id, None)
        kept = self._fences.get(w.task_id)
        if fenced_off(kept, w.fence):
            return
        self._rows[w.task_id] = (StoredResult(w.state, w.payload), now + w.ttl)
        if w.fence is None:
            self._fences.pop(w.task_id, None)
        elif w.fence.attempt > 1:
            self._fences[w.task_id] = w.fence

    def vote(self, writes: Sequence[ResultWrite], vote: ChordVote) -> bool:
        now = time.time()
        with _LOCK:
            for w in writes:
                self._write(w, now)
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
            self._fences.pop(task_id, None)

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

    def revoke(self, task_ids: Sequence[str], ttl: float) -> None:
        check_revocation(task_ids, ttl)
        now = time.time()
        with _LOCK:
            revoked = self._revoked
            for task_id in task_ids:
                revoked.seq += 1
                revoked.ids.pop(task_id, None)  # to the end: the newest
                revoked.ids[task_id] = (revoked.seq, now + ttl)
            for task_id in [t for t, (_, until) in revoked.ids.items() if until < now]:
                del revoked.ids[task_id]
            for task_id in list(revoked.ids)[: max(0, len(revoked.ids) - REVOKED_MAX)]:
                del revoked.ids[task_id]

    def revocations(self, since: int = 0) -> Revocations:
        now = time.time()
        with _LOCK:
            revoked = self._revoked
            found = tuple(
                Revocation(task_id, until)
                for task_id, (seq, until) in revoked.ids.items()
                if seq > since and until >= now
            )
            return Revocations(found, revoked.seq)

    def add_events(self, bodies: Sequence[bytes], kept: int) -> None:
        check_events_kept(kept)
        with _LOCK:
            events = _EVENTS.setdefault(self._url, _Events())
            for body in bodies:
                events.last += 1
                events.kept[events.last] = bytes(body)
            for offset in list(events.kept)[: max(0, len(events.kept) - kept)]:
                del events.kept[offset]
            _LOCK.notify_all()

    def read_events(self, after: str | None, limit: int) -> EventPage:
        check_event_reading(limit)
        start = _offset(after)
        with _LOCK:
            events = _EVENTS.get(self._url, _Events())
            found = tuple(
                StoredEvent(str(offset), body)
                for offset, body in events.kept.items()
                if offset > start
            )[:limit]
        return EventPage(found, found[-1].offset if found else after or "")

    def last_event_offset(self) -> str | None:
        with _LOCK:
            events = _EVENTS.get(self._url)
            return str(events.last) if events is not None and events.kept else None

    def schedule_store(self, publish: Publish) -> ScheduleStore:
        return MemorySchedules(self._url, _LOCK, publish, atomic=False)

    def take_rate(
        self, task: str, key: str, interval: float, holder: str, keep: float = RESERVATION_KEPT
    ) -> float:
        check_interval(interval)
        with _LOCK:
            now = time.time()
            limits = self._limits
            interval = limits.overrides.get(task, interval)
            state = limits.rates.setdefault((task, key), RateState())
            kept = limits.reservations.pop((task, key, holder), None)
            reservation = kept[0] if kept is not None and kept[1] >= now else None
            taken = decide_rate(state, reservation, now, interval)
            if taken.reservation is not None:
                until = taken.reservation + keep
                limits.reservations[(task, key, holder)] = (taken.reservation, until)
        return taken.wait

    def set_rate_override(self, task: str, interval: float | None) -> None:
        if interval is not None:
            check_interval(interval)
        with _LOCK:
            if interval is None:
                self._limits.overrides.pop(task, None)
            else:
                self._limits.overrides[task] = interval

    def rate_override(self, task: str) -> float | None:
        with _LOCK:
            return self._limits.overrides.get(task)

    def take_slot(
        self,
        task: str,
        key: str,
        holder: str,
        limit: int,
        lease: float,
        backoff: Backoff = BACKOFF,
    ) -> float:
        with _LOCK:
            now = time.time()
            held = self._limits.slots.setdefault((task, key), {})
            for other in [h for h, until in held.items() if until < now]:
                del held[other]
            backoffs = self._limits.backoffs
            if holder in held or len(held) < limit:
                held[holder] = now + lease
                backoffs.pop((task, key, holder), None)
                return 0.0
            kept = backoffs.get((task, key, holder))
            base = backoff.next_base(kept[0] if kept is not None and kept[1] >= now else None)
            backoffs[(task, key, holder)] = (base, now + backoff.kept)
        return backoff.jittered(base, random.random())

    def release_slot(self, task: str, key: str, holder: str) -> None:
        with _LOCK:
            self._limits.slots.get((task, key), {}).pop(holder, None)
            self._limits.backoffs.pop((task, key, holder), None)

    def close(self) -> None:
        pass
