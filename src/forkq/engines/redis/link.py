"""One process's connection to a Redis broker, shared by the `RedisBroker` and its sessions:
the client and the `Wire` of its hot commands, the Lua scripts (each after entries.lua, which
reads what anyone may have written), the queues whose streams and group exist, and the script
calls both make. Driver errors become `BrokerError` in `errors`, `BrokerUnavailable` for a
connection problem.

Acks are one XACK and one XDEL per band stream for all the ids given, in the next fetch
script's call or as plain commands in the caller's round trip. An entry id is never reused (a
released entry comes back under a new one), so an ack can only reach the entry its consumer
fetched: there is no holder to check.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from importlib import resources
from typing import Any, Literal

import redis
from redis.commands.core import Script

from forkq.engines.contract import DeadLetterCaps, Outgoing
from forkq.engines.redis.client import (
    Batch,
    Commands,
    client_from_url,
    errors_as,
    longest_block,
)
from forkq.engines.redis.cluster_wire import wire_for
from forkq.engines.redis.keys import (
    GROUP,
    QueueKeys,
    Receipt,
    band_of,
    delayed_member,
    queues_key,
)
from forkq.engines.redis.replication import replication_from_url
from forkq.exceptions import BrokerError, BrokerFull, BrokerUnavailable, ConfigurationError
from forkq.settings import redacted

MOVE_AT_ONCE = 1000  # delayed messages a fetch script call moves into the streams

#: settle.lua's actions: its ARGV[5] is then the delay in ms, or the reason.
Action = Literal["requeue", "dead"]


@functools.cache
def _script(name: str) -> str:
    """Read once per process tree (children reuse the master's), after entries.lua."""
    scripts = resources.files("forkq.engines.redis.lua")
    return scripts.joinpath("entries.lua").read_text() + scripts.joinpath(name).read_text()


@functools.cache
def _delay_script() -> str:
    return resources.files("forkq.engines.redis.lua").joinpath("delay.lua").read_text()


def owed_by_queue(acks: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """(queue, receipt) pairs as the fetch script takes its acks: per queue, [band, id, band,
    id, ...]."""
    by_queue: dict[str, list[str]] = {}
    for queue, receipt in acks:
        by_queue.setdefault(queue, []).append(receipt)
    return {queue: Receipt.flat(receipts) for queue, receipts in by_queue.items()}


def _ids_by_band(flat: Sequence[str]) -> dict[int, list[str]]:
    """[band, id, band, id, ...] (`owed_by_queue`) as the ids of each band."""
    by_band: dict[int, list[str]] = {}
    for band, entry_id in zip(flat[::2], flat[1::2], strict=True):
        by_band.setdefault(int(band), []).append(entry_id)
    return by_band


def _fetch_keys(k: QueueKeys) -> list[str]:
    """fetch.lua's KEYS."""
    return [k.delayed, *k.bands_high_first, k.dead]


def _now_ms() -> int:
    return int(time.time() * 1000)


class RedisLink:
    def __init__(self, url: str, dead_caps: DeadLetterCaps) -> None:
        self._errors = errors_as(BrokerUnavailable, BrokerError, BrokerFull, "redis broker")
        with self._errors:  # a cluster's client asks for its layout at once
            self.client, self.prefix = client_from_url(url)
        self.wire = wire_for(self.client)  # publish, fetch and the blocking read
        self.longest_block = longest_block(self.client)
        self.replication = replication_from_url(url)  # WAIT after each publish, if asked
        if self.replication.replicas and self.replication.timeout > self.longest_block:
            raise ConfigurationError(
                f"wait_timeout in {redacted(url)!r} must be at most {self.longest_block:g} s, "
                "within the connection's socket_timeout, whose read it would outlast"
            )
        self._caps = [dead_caps.max_count, dead_caps.max_age_ms]  # what the scripts are given
        self._fetch = self.client.register_script(_script("fetch.lua"))
        self._settle = self.client.register_script(_script("settle.lua"))
        self._release = self.client.register_script(_script("release.lua"))
        self._purge = self.client.register_script(_script("purge.lua"))
        self._ready_queues: set[str] = set()  # queues whose streams and groups exist

    def keys(self, queue: str) -> QueueKeys:
        return QueueKeys(self.prefix, queue)

    def ensure(self, queue: str) -> QueueKeys:
        """The queue's keys, its streams and group created first if this process has not yet."""
        keys = self.keys(queue)
        if queue not in self._ready_queues:
            # One round trip (a new child does this on its first fetch): BUSYGROUP, the group
            # exists already, is the usual answer and not an error.
            pipe = self.client.pipeline(transaction=False)
            pipe.sadd(queues_key(self.prefix), queue)
            for stream in keys.bands_high_first:
                pipe.xgroup_create(stream, GROUP, id="0", mkstream=True)
            made: bool | None = None
            for reply in pipe.execute(raise_on_error=False):
                if isinstance(reply, redis.exceptions.OutOfMemoryError):
                    made = self._made(keys) if made is None else made
                    if made:
                        continue
                if isinstance(reply, redis.ResponseError) and "BUSYGROUP" not in str(reply):
                    raise reply
            self._ready_queues.add(queue)
        return keys

    def _made(self, keys: QueueKeys) -> bool:
        """Whether what `ensure` makes is there: the queue listed, each band stream with the
        group. Read when a server over maxmemory refused the making (it refuses even an
        XGROUP CREATE that would find its group), so that a child forked then still fetches."""
        pipe = self.client.pipeline(transaction=False)
        pipe.sismember(queues_key(self.prefix), keys.queue)
        for stream in keys.bands_high_first:
            pipe.xinfo_groups(stream)
        listed, *bands = pipe.execute(raise_on_error=False)
        mine = GROUP.encode()
        return bool(listed) and all(
            isinstance(groups, list) and any(g["name"] == mine for g in groups) for groups in bands
        )

    def destination(self, message: Outgoing) -> str:
        """The key a message goes to: its band stream when due now, else its delayed set."""
        k = self.keys(message.queue)
        return k.delayed if message.delay > 0 else k.band(band_of(message.priority))

    def queue_publish(self, pipe: Commands, messages: Sequence[Outgoing]) -> None:
        """Add the messages to a pipeline or batch: each due now an entry of its band stream,
        each delayed a member of its delayed set, due `delay` after now by the server's clock
        (delay.lua, sent as EVAL: a script the server lost needs no reloading). Their queues
        must exist (`ensure`)."""
        for m in messages:
            key = self.destination(m)
            if m.delay > 0:
                member = delayed_member(os.urandom(8).hex().encode(), m.priority, 0, m.body)
                delay_ms = int(m.delay * 1000)
                pipe.execute_command("EVAL", _delay_script(), 1, key, delay_ms, member)
            else:
                pipe.execute_command("XADD", key, "*", "b", m.body, "d", 0, "p", m.priority)

    def known_queues(self) -> list[str]:
        """Every queue used under this prefix."""
        members: Any = self.client.smembers(queues_key(self.prefix))
        return sorted(m.decode() for m in members)

    def fetch(
        self, k: QueueKeys, consumer: str, limit: int, reread: bool, acks: Sequence[str]
    ) -> Any:
        """fetch.lua on one queue: `acks` ([band, id, ...]) first, then up to `limit` entries
        (after those `consumer` holds already, if `reread`)."""
        args = [GROUP, consumer, limit, _now_ms(), MOVE_AT_ONCE, int(reread), *self._caps, *acks]
        return self.wire.script(self._fetch, _fetch_keys(k), args)

    def send_acks(
        self, consumer: str, owed: dict[str, list[str]], pipe: Commands | None = None
    ) -> None:
        """The acks `consumer` owes (`owed_by_queue`): one XACK and one XDEL per band stream
        for all its ids, plain commands (no script: an id never passes to another consumer, so
        there is no holder to check); queued on `pipe` when given, for its caller to send."""
        if pipe is not None:
            self._queue_acks(pipe, owed)
            return
        batch = Batch()
        self._queue_acks(batch, owed)
        if batch.commands:
            self.wire.send_batch(batch)

    def _queue_acks(self, pipe: Commands, owed: dict[str, list[str]]) -> None:
        for queue, flat in owed.items():
            k = self.keys(queue)
            for band, ids in _ids_by_band(flat).items():
                pipe.execute_command("XACK", k.band(band), GROUP, *ids)
                pipe.execute_command("XDEL", k.band(band), *ids)

    def pending_for(self, consumer: str, queue: str, receipt: str) -> bool:
        """Whether the entry `receipt` names is pending for `consumer` (one XPENDING)."""
        r = Receipt.of(receipt)
        reply: Any = self.wire.call(
            "XPENDING", self.keys(queue).band(r.band), GROUP, r.entry_id, r.entry_id, 1, consumer
        )
        return bool(reply)

    def settle(
        self,
        consumer: str,
        queue: str,
        receipt: str,
        action: Action,
        arg: int | str,
        pipe: Commands | None = None,
    ) -> None:
        """settle.lua on one entry `consumer` holds (queued on `pipe` when given)."""
        r, k = Receipt.of(receipt), self.keys(queue)
        keys = [k.band(r.band), k.delayed, k.dead]
        args = [GROUP, consumer, r.entry_id, action, arg, _now_ms(), r.band,
                os.urandom(8).hex(), *self._caps]  # fmt: skip
        if pipe is None:
            self._settle(keys=keys, args=args)
        else:
            _queue_script(pipe, self._settle, keys, args)

    def release(
        self,
        k: QueueKeys,
        consumer: str,
        running: Sequence[str] = (),
        idle_ms: int = 0,
        count_all: bool = False,
    ) -> int:
        """release.lua on one queue: what `consumer` has held for `idle_ms` or more goes back;
        the entries of `running` (or all, if `count_all`) counted as started once more."""
        args: list[Any] = [GROUP, consumer, idle_ms, int(count_all), *running]
        return int(self._release(keys=k.bands_high_first, args=args))

    def release_everywhere(self, consumer: str, running: Sequence[str]) -> int:
        """Everything `consumer` holds, in every queue used under this prefix, goes back."""
        return sum(self.release(self.keys(q), consumer, running) for q in self.known_queues())

    def purge(self, k: QueueKeys) -> int:
        return int(self._purge(keys=[*k.bands_high_first, k.delayed], args=[GROUP]))

    def errors(self) -> AbstractContextManager[None]:
        return self._errors


def _queue_script(pipe: Commands, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> None:
    """A script call queued on a pipeline or batch as a bare EVALSHA. (Queued as a `Script`,
    redis-py sends SCRIPT EXISTS before the pipeline: a round trip of its own.) A server that
    does not know the script answers NOSCRIPT, raised as `NoScriptError` once all is read."""
    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
