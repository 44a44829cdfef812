"""Schedules' lease and records in Redis: the broker's (fire.lua records a fire and adds its
message to its queue's band stream in one script call) or, under RabbitMQ, the result
backend's (fire.lua records only, then the broker publishes; unfire.lua puts the record back if
the publish fails). Keys (`keys.py`): `{prefix:Q}:schedules`, beside the queue Q a schedule's
fires go to, so a fire touches one hash slot; `prefix:lease:<name>`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from importlib import resources
from typing import Any

from forkq.engines.contract import (
    Fire,
    FireRecord,
    Lease,
    Publish,
    ScheduleStore,
    record_then_publish,
)
from forkq.engines.redis.client import Batch, Client
from forkq.engines.redis.cluster_wire import AnyWire, wire_for
from forkq.engines.redis.keys import QueueKeys, band_of, lease_key

Ensure = Callable[[str], QueueKeys]  # a queue's keys, its streams and group made if need be


@functools.cache
def _script(name: str) -> str:
    scripts = resources.files("forkq.engines.redis.lua")
    return scripts.joinpath("entries.lua").read_text() + scripts.joinpath(name).read_text()


class RedisSchedules(ScheduleStore):
    """`ensure` given: the broker's, each fire's message added by fire.lua. Else `publish`
    sends it, after fire.lua recorded it (the result backend's, under RabbitMQ)."""

    def __init__(
        self,
        client: Client,
        prefix: str,
        errors: AbstractContextManager[None],
        ensure: Ensure | None,
        publish: Publish | None = None,
    ) -> None:
        self._client, self._prefix, self._errors = client, prefix, errors
        self._ensure, self._publish = ensure, publish
        self.atomic = ensure is not None
        self._wire: AnyWire | None = None
        self._fire = client.register_script(_script("fire.lua"))
        self._unfire = client.register_script(_script("unfire.lua"))
        self._hold = client.register_script(_script("lease_hold.lua"))
        self._release = client.register_script(_script("lease_release.lua"))

    def hold(self, lease: str, holder: str, ttl: float) -> bool:
        key = lease_key(self._prefix, lease)
        with self._errors:
            return bool(self._hold(keys=[key], args=[holder, max(1, int(ttl * 1000))]))

    def release(self, lease: str, holder: str) -> None:
        with self._errors:
            self._release(keys=[lease_key(self._prefix, lease)], args=[holder])

    def leader(self, lease: str) -> Lease | None:
        key = lease_key(self._prefix, lease)
        with self._errors:
            pipe = self._client.pipeline(transaction=True)
            pipe.get(key)
            pipe.pttl(key)
            holder, ttl_ms = pipe.execute()
        if holder is None or ttl_ms < 0:
            return None
        return Lease(bytes(holder).decode(errors="replace"), time.time() + ttl_ms / 1000)

    def fire(self, fires: Sequence[Fire]) -> list[bool]:
        if self._ensure is None:
            assert self._publish is not None
            return record_then_publish(fires, self._claim, self._unclaim, self._publish)
        ensure = self._ensure
        with self._errors:
            for queue in {f.queue for f in fires}:
                ensure(queue)
            if len(fires) == 1:
                return [self._claimed(self._call(fires[0]))]
            batch = Batch()  # by EVAL: a server that lost the script needs no reloading
            for f in fires:
                batch.execute_command(
                    "EVAL", self._fire.script, 2, *self._fire_keys(f), *self._fire_args(f)
                )
            if self._wire is None:
                self._wire = wire_for(self._client)  # made once: it holds a connection
            return [self._claimed(reply) for reply in self._wire.send_batch(batch)]

    def _call(self, f: Fire) -> Any:
        return self._fire(keys=self._fire_keys(f), args=self._fire_args(f))

    def _fire_keys(self, f: Fire) -> list[str]:
        """fire.lua's KEYS: the queue's schedules, the band stream the fire's message goes to
        (unused for a record only)."""
        keys = QueueKeys(self._prefix, f.queue)
        m = f.message if self._ensure is not None else None
        return [keys.schedules, keys.band(band_of(m.priority if m else 0))]

    def _fire_args(self, f: Fire) -> list[bytes | str | int]:
        m = f.message if self._ensure is not None else None
        body, priority = (m.body, m.priority) if m else (b"", 0)
        return [f.schedule, f.due_ms, _now_ms(), f.task_id, body, priority]

    @staticmethod
    def _claimed(reply: Any) -> bool:
        return bool(reply[0])

    def _claim(self, f: Fire) -> tuple[bool, FireRecord | None]:
        with self._errors:
            claimed, before = self._call(f)
        return bool(claimed), _record(before)

    def _unclaim(self, f: Fire, before: FireRecord | None) -> None:
        """Only this fire's record is put back: fire.lua wrote it with the time of the call,
        which is not known here, so the record is read and matched by due time and task id."""
        keys = QueueKeys(self._prefix, f.queue)
        with self._errors:
            now: Any = self._client.hget(keys.schedules, f.schedule)
            mine = _record(now)
            if mine is None or (mine.due_ms, mine.task_id) != (f.due_ms, f.task_id):
                return
            previous = "" if before is None else _text(before)
            self._unfire(keys=[keys.schedules], args=[f.schedule, now, previous])

    def records(self, queues: Mapping[str, str]) -> dict[str, FireRecord]:
        names = list(queues)
        with self._errors:
            pipe = self._client.pipeline(transaction=False)
            for name in names:
                pipe.hget(QueueKeys(self._prefix, queues[name]).schedules, name)
            found = [_record(raw) for raw in pipe.execute()]
        return {name: record for name, record in zip(names, found, strict=True) if record}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _text(record: FireRecord) -> str:
    return f"{record.due_ms} {record.fired_at_ms} {record.task_id}"


def _record(raw: Any) -> FireRecord | None:
    """A record as fire.lua writes it; junk (anyone may write to Redis) reads as none."""
    if raw is None:
        return None
    due, fired_at, task_id = [*bytes(raw).decode(errors="replace").split(" ", 2), "", ""][:3]
    if not (_digits(due.removeprefix("-")) and _digits(fired_at)):
        return None
    return FireRecord(int(due), int(fired_at), task_id)


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()
