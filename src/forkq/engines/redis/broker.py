"""The Redis broker: streams with a consumer group, at-least-once with prompt recovery.

Fetch: a Lua script moves due delayed messages into the queue's streams and reads up to N new
entries for the consumer, highest band first (one round trip); only when there is nothing does
the consumer block in XREADGROUP (no polling; an idle consumer costs nothing). An entry stays
pending for its consumer until it is settled (ack, requeue, dead-letter) or released.

Round trips: a task whose result is kept has its result write and ack in one pipeline. A task
without a result to write has its ack kept back (`forkq.engines.redis.acks`): the kept acks
ride with the consumer's next fetch, so a batch of such tasks costs one round trip in all.
Every other call of the process (release, close, any settle) sends kept acks first, so a
consumer never releases an entry it has finished.

A fetch that fails after its request may have reached the server (a connection lost before
the reply) may have delivered entries the consumer never learned of: its next fetch of those
queues reads its own pending entries again before new ones.

Recovery: when a child dies its master releases what it held at once (`release.lua` puts the
entries back at the end of their band). What a whole dead worker held, its queues' consumers
take back after lease_ttl (`forkq.engines.redis.recovery`).

Key schema: `forkq.engines.redis.keys`. Driver errors become `BrokerError` here,
`BrokerUnavailable` for a connection problem.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any

import redis

from forkq.engines.contract import (
    DEFAULT_DEAD_CAPS,
    Broker,
    Consumer,
    DeadLetter,
    DeadLetterCaps,
    Delivery,
    ResultBackend,
    ResultWrite,
    Sighting,
    check_fetch_args,
    lease_ttl_from_url,
)
from forkq.engines.redis import seen as redis_seen
from forkq.engines.redis.acks import WaitingAcks
from forkq.engines.redis.client import (
    Wire,
    client_from_url,
    longest_block,
    same_server,
    unreachable,
)
from forkq.engines.redis.dead import delete_dead, purge_dead_letters, read_dead
from forkq.engines.redis.keys import GROUP, QueueKeys, band_of, queues_key
from forkq.engines.redis.recovery import DeadWorkerRecovery
from forkq.engines.redis.replies import from_read, from_script
from forkq.exceptions import BrokerError, BrokerUnavailable

_MOVE_AT_ONCE = 1000  # delayed messages moved per fetch call


@functools.cache
def _script(name: str) -> str:
    """Read once per process tree (children reuse the master's), after entries.lua."""
    scripts = resources.files("forkq.engines.redis.lua")
    return scripts.joinpath("entries.lua").read_text() + scripts.joinpath(name).read_text()


class RedisBroker(Broker):
    def __init__(self, url: str, dead_caps: DeadLetterCaps = DEFAULT_DEAD_CAPS) -> None:
        self.lease_ttl = lease_ttl_from_url(url)
        self.dead_caps = dead_caps
        self._caps = [dead_caps.max_count, dead_caps.max_age_ms]  # what the scripts are given
        self.client, self.prefix = client_from_url(url)
        self._fetch = self.client.register_script(_script("fetch.lua"))
        self._settle = self.client.register_script(_script("settle.lua"))
        self._release = self.client.register_script(_script("release.lua"))
        self._purge = self.client.register_script(_script("purge.lua"))
        self._ready_queues: set[str] = set()  # queues whose streams and groups exist
        self._recovery = DeadWorkerRecovery(self.client, self.prefix, self.lease_ttl, self._release)
        self._waiting = WaitingAcks()  # acks kept back for the next fetch
        self._reread: set[tuple[str, str]] = set()  # (consumer, queue): pending to read again
        self._wire = Wire(self.client)  # publish, fetch and the blocking read
        self._longest_block = longest_block(self.client)
        self.url = url

    def _keys(self, queue: str) -> QueueKeys:
        return QueueKeys(self.prefix, queue)

    def _ensure(self, queue: str) -> QueueKeys:
        keys = self._keys(queue)
        if queue not in self._ready_queues:
            # One round trip (a new child does this on its first fetch): BUSYGROUP, the group
            # exists already, is the usual answer and not an error.
            pipe = self.client.pipeline(transaction=False)
            pipe.sadd(queues_key(self.prefix), queue)
            for stream in keys.bands_high_first:
                pipe.xgroup_create(stream, GROUP, id="0", mkstream=True)
            for reply in pipe.execute(raise_on_error=False):
                if isinstance(reply, redis.ResponseError) and "BUSYGROUP" not in str(reply):
                    raise reply
            self._ready_queues.add(queue)
        return keys

    def publish(self, queue: str, body: bytes, *, priority: int = 0, delay: float = 0.0) -> None:
        self.publish_many([(queue, body, priority, delay)])

    def publish_many(self, items: Sequence[tuple[str, bytes, int, float]]) -> None:
        now_ms = int(time.time() * 1000)
        with self._errors():
            for queue in {item[0] for item in items}:
                self._ensure(queue)
            if len(items) == 1 and items[0][3] <= 0:  # .delay(): no pipeline for one XADD
                queue, body, priority, _ = items[0]
                priority = min(9, max(0, int(priority)))
                stream = self._keys(queue).band(band_of(priority))
                self._wire.call("XADD", stream, "*", "b", body, "d", 0, "p", priority)
                return
            pipe = self.client.pipeline(transaction=False)
            for queue, body, priority, delay in items:
                keys, priority = self._keys(queue), min(9, max(0, int(priority)))
                if delay > 0:
                    member = b"%s|%d|0|%s" % (os.urandom(8).hex().encode(), priority, body)
                    pipe.zadd(keys.delayed, {member: now_ms + int(delay * 1000)})
                else:
                    pipe.xadd(keys.band(band_of(priority)), {"b": body, "d": 0, "p": priority})
            pipe.execute()

    def fetch(
        self, consumer: Consumer, queues: Sequence[str], limit: int, timeout: float
    ) -> list[Delivery]:
        check_fetch_args(queues, limit)
        deadline = time.monotonic() + timeout
        try:
            return self._fetch_until(consumer, queues, limit, deadline)
        except BaseException:
            self._reread.update((consumer.name, q) for q in queues)
            raise

    def _fetch_until(
        self, consumer: Consumer, queues: Sequence[str], limit: int, deadline: float
    ) -> list[Delivery]:
        with self._errors():
            keys = [self._ensure(q) for q in queues]
            while True:
                self._recovery.run(keys)
                got, next_due = self._claim(consumer, keys, limit)
                self._send_waiting()  # those of queues that were not read
                remaining = deadline - time.monotonic()
                if got or remaining <= 0:
                    return got
                recovery_at = self._recovery.next_at
                wake_at = recovery_at if next_due is None else min(next_due, recovery_at)
                block = min(remaining, max(0.001, wake_at - time.time()), self._longest_block)
                got = self._block(consumer, keys, limit, block)
                if got:
                    return got

    def _claim(
        self, consumer: Consumer, keys: list[QueueKeys], limit: int
    ) -> tuple[list[Delivery], float | None]:
        got: list[Delivery] = []
        next_due: float | None = None
        for k in keys:
            acks = self._waiting.take(consumer, k.queue)
            reread = (consumer.name, k.queue) in self._reread
            args = [GROUP, consumer.name, limit - len(got), int(time.time() * 1000), _MOVE_AT_ONCE,
                    int(reread), *self._caps]  # fmt: skip
            try:
                reply = self._wire.script(
                    self._fetch, [k.delayed, *k.bands_high_first, k.dead], args + acks
                )
            except BaseException:
                self._waiting.restore(consumer, k.queue, acks)  # not lost with the call
                raise
            if reply[0]:
                due = float(reply[0]) / 1000
                next_due = due if next_due is None else min(next_due, due)
            if reread and not reply[1]:  # it read all it held again
                self._reread.discard((consumer.name, k.queue))
            got += from_script(k.queue, reply)
            if len(got) >= limit:
                break
        return got, next_due

    def _send_waiting(self, waiting: WaitingAcks | None = None, client: Any = None) -> None:
        """The kept acks, one fetch script per queue that reads nothing (queued on `client`,
        a pipeline, when given)."""
        waiting = self._waiting if waiting is None else waiting
        with self._errors():
            for consumer, queue, acks in waiting.take_all():
                k = self._keys(queue)
                keys = [k.delayed, *k.bands_high_first, k.dead]
                now_ms = int(time.time() * 1000)
                args: list[Any] = [GROUP, consumer.name, 0, now_ms, 0, 0, *self._caps, *acks]
                if client is not None:  # a pipeline: its caller sends it
                    self._fetch(keys=keys, args=args, client=client)
                    continue
                try:
                    self._wire.script(self._fetch, keys, args)
                except BaseException:
                    waiting.restore(consumer, queue, acks)  # where they were taken from
                    raise

    def _block(
        self, consumer: Consumer, keys: list[QueueKeys], limit: int, seconds: float
    ) -> list[Delivery]:
        streams = [stream for k in keys for stream in k.bands_high_first]
        reply: Any = self._wire.call(
            "XREADGROUP", "GROUP", GROUP, consumer.name, "COUNT", limit,
            "BLOCK", max(1, int(seconds * 1000)), "STREAMS", *streams, *[">"] * len(streams),
        )  # fmt: skip
        got, bodiless = from_read(keys, reply)
        for entry in bodiless:  # as fetch.lua does with them
            self.dead_letter(consumer, entry.delivery, entry.reason)
        # COUNT applies per stream: entries that landed in several bands at once can exceed
        # the limit. Keep the highest bands (replies come in request order), give back the rest.
        for extra in got[limit:]:
            self.requeue(consumer, extra)
        return got[:limit]

    def ack(self, consumer: Consumer, delivery: Delivery) -> None:
        self._settle_one(consumer, delivery, "ack", 0)

    def finish(
        self,
        consumer: Consumer,
        delivery: Delivery,
        result: ResultWrite | None,
        backend: ResultBackend,
    ) -> None:
        """With the results on the same Redis server and database: the result write and the
        ack in one pipeline, one round trip (result first, on the same connection)."""
        if result is None:
            self._waiting.add(consumer, delivery)  # sent with the fetch that comes next
            if self._waiting.overdue():
                self._send_waiting()
            return
        queue_store = getattr(backend, "queue_store", None)
        if queue_store is None or not self._same_server(backend):
            super().finish(consumer, delivery, result, backend)  # its ack sends kept ones
            return
        with self._errors():
            pipe = self.client.pipeline(transaction=False)
            queue_store(pipe, result)
            self._send_waiting(client=pipe)  # kept acks in the same round trip
            self._settle_one(consumer, delivery, "ack", 0, client=pipe)
            pipe.execute()

    def _same_server(self, backend: ResultBackend) -> bool:
        other = getattr(backend, "client", None)
        return isinstance(other, redis.Redis) and same_server(self.client, other)

    def requeue(self, consumer: Consumer, delivery: Delivery, delay: float = 0.0) -> None:
        self._settle_one(consumer, delivery, "requeue", int(max(0.0, delay) * 1000))

    def dead_letter(self, consumer: Consumer, delivery: Delivery, reason: str) -> None:
        self._settle_one(consumer, delivery, "dead", reason)

    def _settle_one(
        self, consumer: Consumer, delivery: Delivery, action: str, arg: Any, client: Any = None
    ) -> None:
        if client is None:
            self._send_waiting()
        band, entry_id = delivery.receipt.split("-", 1)
        k = self._keys(delivery.queue)
        with self._errors():
            self._settle(
                client=client,
                keys=[k.band(int(band)), k.delayed, k.dead],
                args=[
                    GROUP,
                    consumer.name,
                    entry_id,
                    action,
                    arg,
                    int(time.time() * 1000),
                    band,
                    os.urandom(8).hex(),
                    *self._caps,
                ],
            )

    def kept_acks(self) -> list[tuple[str, str]]:
        return self._waiting.pairs()

    def release(
        self,
        consumer_name: str,
        running: Collection[str] = (),
        finished: Collection[tuple[str, str]] = (),
    ) -> int:
        released = 0
        with self._errors():
            self._send_waiting()
            # What the consumer (a dead child) had finished: acked, not released.
            self._send_waiting(WaitingAcks.of(consumer_name, finished))
            for queue in self._queues_of(consumer_name):
                k = self._keys(queue)
                released += int(
                    self._release(
                        keys=k.bands_high_first, args=[GROUP, consumer_name, 0, "0", *running]
                    )
                )
        return released

    def _queues_of(self, consumer_name: str) -> list[str]:
        """Queues the consumer may hold messages of: every queue used under this prefix."""
        return self._known_queues()

    def _known_queues(self) -> list[str]:
        members: Any = self.client.smembers(queues_key(self.prefix))
        return sorted(m.decode() for m in members)

    def heartbeat(self, worker: str, queues: Sequence[str] = ()) -> None:
        with self._errors():
            redis_seen.beat(self.client, self.prefix, worker, queues, self.lease_ttl)

    def consumers_seen(self, queue: str, within: float) -> list[Sighting]:
        with self._errors():
            return redis_seen.seen(self.client, self.prefix, queue, within)

    def purge(self, queue: str) -> int:
        with self._errors():
            self._send_waiting()
            k = self._ensure(queue)
            return int(self._purge(keys=[*k.bands_high_first, k.delayed], args=[GROUP]))

    def size(self, queue: str) -> int:
        k = self._keys(queue)
        with self._errors():
            self._send_waiting()  # this process's own count includes its finished tasks
            pipe = self.client.pipeline(transaction=False)
            for stream in k.bands_high_first:
                pipe.xlen(stream)
            pipe.zcard(k.delayed)
            return sum(pipe.execute())

    def dead_letters(self, queue: str | None = None, limit: int = 100) -> list[DeadLetter]:
        with self._errors():
            return read_dead(self.client, self.prefix, self._named(queue), limit)

    def requeue_dead(self, receipts: Collection[str] | None = None) -> int:
        chosen = self.dead_letters(limit=1_000_000)
        if receipts is not None:
            chosen = [d for d in chosen if d.receipt in receipts]
        with self._errors():
            for letter in chosen:
                self.publish(letter.queue, letter.body, priority=letter.priority)
                delete_dead(self.client, self.prefix, letter)
        return len(chosen)

    def purge_dead(self, queue: str | None = None) -> int:
        with self._errors():
            return purge_dead_letters(self.client, self.prefix, self._named(queue))

    def _named(self, queue: str | None) -> list[str]:
        return [queue] if queue else self._known_queues()

    def close(self) -> None:
        with contextlib.suppress(BrokerError):
            self._send_waiting()
        self.client.close()

    def abandon(self) -> None:
        # redis-py notices the pid change and never shuts down the parent's sockets; dropping
        # the pool is enough for this process to open its own on next use.
        self.client.connection_pool.reset()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            kind = BrokerUnavailable if unreachable(exc) else BrokerError
            raise kind(f"redis broker: {exc}") from exc
