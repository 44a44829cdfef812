"""The Redis broker: streams with a consumer group, at-least-once with prompt recovery.

Publish: a message due now is an entry of its queue's band stream (one XADD, on the `Wire`,
for a single message; a pipeline for several), a delayed one a member of the queue's delayed
set, which the fetch script moves into the streams when due. With `?wait_replicas=N` the
publish ends with `WAIT` in the same write (`forkq.engines.redis.replication`). Consumers
fetch and settle through their session (`forkq.engines.redis.session`), which holds back acks
to send with its next call.

Recovery: when a child dies its master releases what it held at once (`release`: its finished
entries acked, those killed dead-lettered, the rest put back at the end of their band by
`release.lua`). What a whole dead worker held, its queues' consumers take back after lease_ttl
(`forkq.engines.redis.recovery`).

Key schema: `forkq.engines.redis.keys`; the connection, scripts and error translation:
`forkq.engines.redis.link`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from forkq.engines.contract import (
    DEFAULT_DEAD_CAPS,
    Broker,
    Capabilities,
    Consumer,
    ConsumerSession,
    ControlChannel,
    DeadLetter,
    DeadLetterCaps,
    Delayed,
    Leftovers,
    Outgoing,
    QueueDepth,
    Recovery,
    ResultBackend,
    ScheduleStore,
    Sighting,
    lease_ttl_from_url,
    outgoing,
)
from forkq.engines.redis import seen as redis_seen
from forkq.engines.redis.client import Batch, Client, abandon_client, close_client
from forkq.engines.redis.control import RedisControl
from forkq.engines.redis.dead import (
    delete_dead,
    delete_dead_letters,
    purge_dead_letters,
    read_dead,
)
from forkq.engines.redis.keys import band_of, read_delayed_member
from forkq.engines.redis.link import RedisLink, owed_by_queue
from forkq.engines.redis.memory import eviction_warning
from forkq.engines.redis.schedules import RedisSchedules
from forkq.engines.redis.session import RedisSession


class RedisBroker(Broker):
    capabilities = Capabilities(Recovery.LEASE, keeps_acks=True)

    def __init__(self, url: str, dead_caps: DeadLetterCaps = DEFAULT_DEAD_CAPS) -> None:
        super().__init__()
        self.lease_ttl = lease_ttl_from_url(url)
        self.dead_caps = dead_caps
        self._link = RedisLink(url, dead_caps)

    @property
    def client(self) -> Client:
        return self._link.client

    @property
    def prefix(self) -> str:
        return self._link.prefix

    def publish(self, messages: Sequence[Outgoing]) -> None:
        link = self._link
        replication = link.replication
        with link.errors():
            if len(messages) == 1 and messages[0].delay <= 0 and not replication.replicas:
                m = messages[0]  # .delay(): no pipeline for one
                stream = link.ensure(m.queue).band(band_of(m.priority))
                link.wire.call("XADD", stream, "*", "b", m.body, "d", 0, "p", m.priority)
                return
            for queue in {m.queue for m in messages}:
                link.ensure(queue)
            batch = Batch()  # all or none: a server out of memory refuses the whole
            link.queue_publish(batch, messages)
            then = (replication.wait_command,) if replication.replicas else ()
            replies = link.wire.send_transaction(batch, then)  # WAIT's in the same write
        if replication.replicas:
            replication.check(int(replies[-1]), len(messages))

    def _open_session(self, consumer: Consumer, results: ResultBackend) -> ConsumerSession:
        return RedisSession(consumer, results, self.capabilities, self._link, self.lease_ttl)

    def _release(self, consumer: Consumer, leftovers: Leftovers) -> int:
        link, name = self._link, consumer.name
        with link.errors():
            link.send_acks(name, owed_by_queue(leftovers.finished))
            for verdict in leftovers.dead:
                link.settle(name, verdict.queue, verdict.receipt, "dead", verdict.reason)
            return link.release_everywhere(name, leftovers.running)

    def heartbeat(self, worker: str, queues: Sequence[str] = ()) -> None:
        with self._link.errors():
            redis_seen.beat(self.client, self.prefix, worker, queues, self.lease_ttl)

    def consumers_seen(self, queue: str, within: float) -> list[Sighting]:
        with self._link.errors():
            return redis_seen.seen(self.client, self.prefix, queue, within)

    def _purge(self, queue: str) -> int:
        with self._link.errors():
            return self._link.purge(self._link.ensure(queue))

    def _size(self, queue: str) -> int:
        return self._depth(queue).messages

    def _depth(self, queue: str) -> QueueDepth:
        """The streams' entries (held ones stay in a stream until acked) and the delayed set."""
        k = self._link.keys(queue)
        with self._link.errors():
            pipe = self.client.pipeline(transaction=False)
            for stream in k.bands_high_first:
                pipe.xlen(stream)
            pipe.zcard(k.delayed)
            *streams, delayed = pipe.execute()
        return QueueDepth(sum(streams) + delayed, delayed, tuple(reversed(streams)))

    def dead_letters(self, queue: str | None = None, limit: int = 100) -> list[DeadLetter]:
        with self._link.errors():
            return read_dead(self.client, self.prefix, self._named(queue), limit)

    def requeue_dead(self, receipts: Collection[str] | None = None) -> int:
        chosen = self.dead_letters(limit=1_000_000)
        if receipts is not None:
            chosen = [d for d in chosen if d.receipt in receipts]
        with self._link.errors():
            for letter in chosen:
                self.publish([outgoing(letter.queue, letter.body, letter.priority)])
                delete_dead(self.client, self.prefix, letter)
        return len(chosen)

    def delete_dead(self, receipts: Collection[str]) -> int:
        with self._link.errors():
            return delete_dead_letters(self.client, self.prefix, receipts)

    def purge_dead(self, queue: str | None = None) -> int:
        with self._link.errors():
            return purge_dead_letters(self.client, self.prefix, self._named(queue))

    def schedule_store(self) -> ScheduleStore:
        """Schedules beside the queues: fire.lua records a fire and adds its message at once."""
        link = self._link
        return RedisSchedules(link.client, link.prefix, link.errors(), link.ensure)

    def delayed(self, queue: str, limit: int = 100) -> list[Delayed]:
        """One ZRANGE of the queue's delayed set."""
        with self._link.errors():
            found: Any = self.client.zrange(
                self._link.keys(queue).delayed, 0, max(0, limit - 1), withscores=True
            )
        listed = []
        for member, ms in found:
            read = read_delayed_member(member)
            if read is not None:
                listed.append(Delayed(queue, read[1], float(ms) / 1000, read[0]))
        return listed

    def control_channel(self, secret: str | None) -> ControlChannel:
        """Over pub/sub on this connection's server (`forkq.engines.redis.control`)."""
        return RedisControl(self.client, self.prefix, secret)

    def server_warnings(self) -> list[str]:
        """An evicting maxmemory-policy (`forkq.engines.redis.memory`)."""
        warning = eviction_warning(self.client, "redis broker")
        return [] if warning is None else [warning]

    def _named(self, queue: str | None) -> list[str]:
        return [queue] if queue else self._link.known_queues()

    def _close(self) -> None:
        close_client(self.client)

    def _abandon(self) -> None:
        abandon_client(self.client)
