"""The Redis result backend: results with a TTL, and waits that block instead of polling.

Storing a ready state also pushes one element to the task's `ready` list; a waiter blocks in
BLPOP on that list and, when woken, pushes the element back for any other waiter. So `get()`
returns about one round trip after the worker stored the result. Keys:
`forkq.engines.redis.keys`.

Several results are stored in one MULTI/EXEC (`store_all`) and read in one MGET (`get_many`).
A chord's vote is vote.lua, sent in one MULTI/EXEC with the member's writes (`vote`); the
Redis session, when it shares this server, sends it with the ack too, and the script then
publishes the chord's messages itself (`vote_call` with destinations). Rate and concurrency
limits are rate.lua and slots.lua, one call each (`limits.py`); revocations revoke.lua and
revocations.lua (`revocations.py`); events a capped stream (`events.py`).

On a Redis Cluster, keys of different tasks lie in different slots: several tasks' writes go
in one MULTI/EXEC a slot, an MGET in one batch of GETs a node, and a chord's vote in its own
MULTI/EXEC after the member's writes (`cluster_wire.py`).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from importlib import resources
from typing import Any

import msgspec
from redis.exceptions import NoScriptError

from forkq.engines.contract import (
    BACKOFF,
    RESERVATION_KEPT,
    Backoff,
    ChordVote,
    EventPage,
    Fence,
    Publish,
    ResultBackend,
    ResultWrite,
    Revocations,
    ScheduleStore,
    StoredResult,
)
from forkq.engines.redis.client import (
    Batch,
    Commands,
    abandon_client,
    client_from_url,
    close_client,
    errors_as,
    longest_block,
)
from forkq.engines.redis.cluster_wire import AnyWire, wire_for
from forkq.engines.redis.events import ADD as ADD_EVENTS
from forkq.engines.redis.events import RedisEvents
from forkq.engines.redis.keys import (
    chord_keys,
    fence_key,
    lock_key,
    ready_key,
    result_key,
    starts_key,
)
from forkq.engines.redis.limits import RedisLimits
from forkq.engines.redis.revocations import RedisRevoked
from forkq.engines.redis.schedules import RedisSchedules
from forkq.exceptions import BackendError, BackendFull, BackendUnavailable
from forkq.states import READY_STATES

# KEYS[1] the lock   ARGV[1] its holder: deleted only if ARGV[1] holds it.
_UNLOCK = """
if redis.call("GET", KEYS[1]) == ARGV[1] then redis.call("DEL", KEYS[1]) end
"""


@functools.cache
def store_script() -> str:
    """store.lua's text, read once per process tree."""
    return resources.files("forkq.engines.redis.lua").joinpath("store.lua").read_text()


@functools.cache
def vote_script() -> str:
    """vote.lua's text, read once per process tree."""
    return resources.files("forkq.engines.redis.lua").joinpath("vote.lua").read_text()


class VoteCall(msgspec.Struct, frozen=True):
    """vote.lua's KEYS and ARGV for one vote: queued on a pipeline, or run again on its own."""

    keys: list[str]
    args: list[Any]


class RedisBackend(ResultBackend):
    def __init__(self, url: str) -> None:
        self._driver_errors = errors_as(
            BackendUnavailable, BackendError, BackendFull, "redis result backend"
        )
        with self._driver_errors:  # a cluster's client asks for its layout at once
            self.client, self.prefix = client_from_url(url)
        self._longest_block = longest_block(self.client)
        self._unlock = self.client.register_script(_UNLOCK)
        self._vote = self.client.register_script(vote_script())
        self._wire: AnyWire | None = None  # made on first use: a worker's child seldom reads
        self._limits = RedisLimits(self.client, self.prefix)
        self._revoked = RedisRevoked(self.client, self.prefix)
        self._events = RedisEvents(
            self._reader, self.prefix, self.client.register_script(ADD_EVENTS)
        )

    def store(
        self, task_id: str, state: str, payload: bytes, ttl: float, fence: Fence | None = None
    ) -> None:
        with self._errors():
            pipe = self.client.pipeline(transaction=True)
            self.queue_store(pipe, ResultWrite(task_id, state, payload, ttl, fence))
            pipe.execute()

    def queue_store(self, pipe: Commands, write: ResultWrite) -> None:
        """Add the write of `store` (store.lua, by EVAL: fenced by its run) to a MULTI/EXEC
        on the same server (the session's result and ack in one round trip); never to a plain
        pipeline (store.lua says why)."""
        t = write.task_id
        keys = (result_key(self.prefix, t), ready_key(self.prefix, t), fence_key(self.prefix, t))
        value = write.state.encode() + b"\n" + write.payload
        ready = 1 if write.state in READY_STATES else 0
        ttl_ms = max(1, int(write.ttl * 1000))
        fence = write.fence
        run = (0, "") if fence is None else (fence.attempt, fence.sending)
        pipe.execute_command("EVAL", store_script(), 3, *keys, value, ttl_ms, ready, *run)

    def store_all(self, writes: Sequence[ResultWrite]) -> None:
        """One MULTI/EXEC (on a cluster, one a slot)."""
        if not writes:
            return
        with self._errors():
            batch = Batch()
            for w in writes:
                self.queue_store(batch, w)
            self._reader().send_transaction(batch)

    def vote(self, writes: Sequence[ResultWrite], vote: ChordVote) -> bool:
        """The writes and vote.lua in one MULTI/EXEC (on a cluster, the writes' then the
        vote's). A server that does not know the script stores the writes and answers
        NOSCRIPT for it: it is run again on its own, which loads it (nothing of the vote
        ran)."""
        call = self.vote_call(vote)
        with self._errors():
            batch = Batch()
            for w in writes:
                self.queue_store(batch, w)
            self.queue_vote(batch, call)
            try:
                fires = self._reader().send_transaction(batch)[-1]
            except NoScriptError:
                fires = self.run_vote(call)
        return bool(fires)

    def vote_call(self, vote: ChordVote, destinations: Sequence[str] | None = None) -> VoteCall:
        """vote.lua's arguments. With `destinations`, the key each of `vote.then` goes to (its
        band stream, or its delayed set when delayed), the script publishes them when the vote
        fires and marks the chord done; without, it only counts."""
        args: list[Any] = [vote.member, vote.size, int(vote.failed), max(1, int(vote.ttl * 1000))]
        args += [int(time.time() * 1000), int(destinations is not None)]
        for m in vote.then if destinations is not None else ():
            delay_ms = max(1, int(m.delay * 1000)) if m.delay > 0 else 0  # as its destination
            args += [m.priority, delay_ms, os.urandom(8).hex(), m.body]
        return VoteCall([*chord_keys(self.prefix, vote.chord), *(destinations or ())], args)

    def queue_vote(self, pipe: Commands, call: VoteCall) -> None:
        """vote.lua as a bare EVALSHA on a pipeline on this server (see `link._queue_script`)."""
        pipe.execute_command("EVALSHA", self._vote.sha, len(call.keys), *call.keys, *call.args)

    def run_vote(self, call: VoteCall) -> Any:
        """vote.lua on its own, loaded first if the server does not know it."""
        return self._vote(keys=call.keys, args=call.args)

    def fired(self, vote: ChordVote) -> None:
        state = chord_keys(self.prefix, vote.chord)[1]
        with self._errors():
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(state, "done", 1)
            pipe.pexpire(state, max(1, int(vote.ttl * 1000)))
            pipe.execute()

    def get(self, task_id: str) -> StoredResult | None:
        """One GET on the Wire: a caller's `get()` of a stored result is this round trip, at
        about half the CPU of redis-py's command path."""
        with self._errors():
            raw: Any = self._reader().call("GET", result_key(self.prefix, task_id))
        return _record(raw)

    def _reader(self) -> AnyWire:
        if self._wire is None:
            self._wire = wire_for(self.client)
        return self._wire

    def get_many(self, task_ids: Sequence[str]) -> list[StoredResult | None]:
        """One MGET."""
        if not task_ids:
            return []
        with self._errors():
            raws: Any = self._reader().call("MGET", *(result_key(self.prefix, t) for t in task_ids))
        return [_record(raw) for raw in raws]

    def wait(self, task_id: str, timeout: float) -> StoredResult | None:
        deadline = time.monotonic() + timeout
        ready = ready_key(self.prefix, task_id)
        while True:
            result = self.get(task_id)
            remaining = deadline - time.monotonic()
            if (result is not None and result.state in READY_STATES) or remaining <= 0:
                return result
            with self._errors():
                wait = min(max(0.01, remaining), self._longest_block)
                popped = self.client.blpop([ready], timeout=wait)
                if popped:
                    self.client.rpush(ready, 1)  # leave the signal for other waiters

    def forget(self, task_id: str) -> None:
        with self._errors():
            t = task_id
            self.client.delete(
                result_key(self.prefix, t), ready_key(self.prefix, t), fence_key(self.prefix, t)
            )

    def count_start(self, key: str, ttl: float) -> int:
        name = starts_key(self.prefix, key)
        with self._errors():
            pipe = self.client.pipeline(transaction=True)
            pipe.incr(name)
            pipe.pexpire(name, max(1, int(ttl * 1000)))
            count, _ = pipe.execute()
        return int(count)

    def forget_starts(self, key: str) -> None:
        with self._errors():
            self.client.delete(starts_key(self.prefix, key))

    def lock(self, key: str, holder: str, ttl: float) -> str | None:
        name = lock_key(self.prefix, key)
        with self._errors():
            pipe = self.client.pipeline(transaction=True)  # the SET and the GET as one
            pipe.set(name, holder, nx=True, px=max(1, int(ttl * 1000)))
            pipe.get(name)
            taken, held = pipe.execute()
        if taken or held is None:
            return None
        current = bytes(held).decode(errors="replace")
        return None if current == holder else current

    def unlock(self, key: str, holder: str) -> None:
        with self._errors():
            self._unlock(keys=[lock_key(self.prefix, key)], args=[holder])

    def revoke(self, task_ids: Sequence[str], ttl: float) -> None:
        """revoke.lua: one round trip."""
        with self._errors():
            self._revoked.revoke(task_ids, ttl)

    def revocations(self, since: int = 0) -> Revocations:
        """revocations.lua: one round trip."""
        with self._errors():
            return self._revoked.revocations(since)

    def schedule_store(self, publish: Publish) -> ScheduleStore:
        """Schedules kept here, each fire recorded here, then sent with `publish`."""
        return RedisSchedules(self.client, self.prefix, self._driver_errors, None, publish)

    def take_rate(
        self, task: str, key: str, interval: float, holder: str, keep: float = RESERVATION_KEPT
    ) -> float:
        """rate.lua: one round trip."""
        with self._errors():
            return self._limits.take_rate(task, key, interval, holder, keep)

    def set_rate_override(self, task: str, interval: float | None) -> None:
        with self._errors():
            self._limits.set_rate_override(task, interval)

    def rate_override(self, task: str) -> float | None:
        with self._errors():
            return self._limits.rate_override(task)

    def take_slot(
        self,
        task: str,
        key: str,
        holder: str,
        limit: int,
        lease: float,
        backoff: Backoff = BACKOFF,
    ) -> float:
        """slots.lua: one round trip."""
        with self._errors():
            return self._limits.take_slot(task, key, holder, limit, lease, backoff)

    def release_slot(self, task: str, key: str, holder: str) -> None:
        with self._errors():
            self._limits.release_slot(task, key, holder)

    def add_events(self, bodies: Sequence[bytes], kept: int) -> None:
        """One XADD per body, all in one round trip (`events.py`)."""
        with self._errors():
            self._events.add(bodies, kept)

    def read_events(self, after: str | None, limit: int) -> EventPage:
        """One XRANGE."""
        with self._errors():
            return self._events.read(after, limit)

    def last_event_offset(self) -> str | None:
        with self._errors():
            return self._events.last_offset()

    def close(self) -> None:
        close_client(self.client)

    def abandon(self) -> None:
        abandon_client(self.client)

    def _errors(self) -> AbstractContextManager[None]:
        return self._driver_errors


def _record(raw: Any) -> StoredResult | None:
    if raw is None:
        return None
    state, _, payload = bytes(raw).partition(b"\n")
    return StoredResult(state.decode(errors="replace"), payload)  # junk reads as no state
