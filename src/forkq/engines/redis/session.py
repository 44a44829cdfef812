"""One consumer of the Redis broker: fetch, then settle each entry it holds.

Fetch (`fetch_until`): the fetch script moves due delayed messages of a queue into its streams
and reads up to N new entries for the consumer, highest band first (one round trip a queue);
only when there is nothing does the consumer block in XREADGROUP (no polling; an idle consumer
costs nothing). An entry stays pending for its consumer until it is acked (XACK and XDEL,
plain commands), settled (requeue, dead-letter: settle.lua) or released (release.lua puts it
back at the end of its band).

Round trips: the acks the session keeps back (a task finished without a result to write,
`ConsumerSession`) ride, grouped by queue, in the next fetch script's arguments, so a batch of
such tasks costs one round trip in all; every other call sends them first. A task whose result
is kept, with the result backend on the broker's own server and database (`joins_results`),
has its result write, the kept acks and its ack in one MULTI/EXEC (all or none, even on a
server out of memory). With effects there
(`atomic_effects`), one MULTI/EXEC carries the writes, vote.lua (which publishes the chord's
messages itself when the vote fires, and marks the chord done), the effects' messages, the
kept acks and the ack: a connection lost on the way applies all of it or nothing.

A fetch that fails after its request may have reached the server (a connection lost before
the reply) may have delivered entries the consumer never learned of: its next fetch of those
queues reads its own pending entries again before new ones.

What a whole dead worker held, its queues' consumers take back after lease_ttl, at their
fetches (`forkq.engines.redis.recovery`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from forkq.engines.contract import (
    Capabilities,
    Claimed,
    Consumer,
    ConsumerSession,
    Delivery,
    Effects,
    RecoveryClock,
    ResultBackend,
    ResultWrite,
    fetch_until,
)
from forkq.engines.redis.client import Batch, same_server, script_missing
from forkq.engines.redis.keys import GROUP, QueueKeys
from forkq.engines.redis.link import Action, RedisLink, owed_by_queue
from forkq.engines.redis.recovery import DeadWorkerRecovery
from forkq.engines.redis.replies import from_read, from_script
from forkq.engines.redis.results import RedisBackend


class RedisSession(ConsumerSession):
    def __init__(
        self,
        consumer: Consumer,
        results: ResultBackend,
        capabilities: Capabilities,
        link: RedisLink,
        lease_ttl: float,
    ) -> None:
        super().__init__(consumer, results, capabilities)
        self._link = link
        self._joined: RedisBackend | None = None  # the results, if on the broker's server
        if isinstance(results, RedisBackend) and same_server(link.client, results.client):
            self._joined = results
        self.joins_results = self.atomic_effects = self._joined is not None
        self._clock = RecoveryClock(lease_ttl)
        self._recovery = DeadWorkerRecovery(link, lease_ttl)
        self.unchallenged_for = lease_ttl / 2
        self._reread: set[str] = set()  # queues whose pending entries to read again

    def _send_acks(self, acks: list[Delivery]) -> None:
        if acks:
            with self._link.errors():
                self._link.send_acks(self.consumer.name, _owed(acks))

    def _fetch(
        self, acks: list[Delivery], queues: Sequence[str], limit: int, timeout: float
    ) -> list[Delivery]:
        try:
            with self._link.errors():
                keys = [self._link.ensure(q) for q in queues]
                owed = _owed(acks)  # sent by the first look, with its reads
                return fetch_until(
                    timeout,
                    self._clock,
                    lambda: self._recovery.run(keys),
                    lambda: self._claim(keys, limit, owed),
                    lambda seconds: self._block(keys, limit, seconds),
                )
        except BaseException:
            self._reread.update(queues)
            raise

    def _claim(self, keys: list[QueueKeys], limit: int, owed: dict[str, list[str]]) -> Claimed:
        got: list[Delivery] = []
        next_due: float | None = None
        for k in keys:
            reread = k.queue in self._reread
            acks = owed.pop(k.queue, ())
            reply = self._link.fetch(k, self.consumer.name, limit - len(got), reread, acks)
            if reply[0] is not None:  # ms until due, by the server's clock
                due = time.time() + float(reply[0]) / 1000
                next_due = due if next_due is None else min(next_due, due)
            if reread and not reply[1]:  # it read all it held again
                self._reread.discard(k.queue)
            got += from_script(k.queue, reply)
            if len(got) >= limit:
                break
        if owed:  # those of queues it did not read
            self._link.send_acks(self.consumer.name, owed)
            owed.clear()
        return Claimed(got, next_due)

    def _block(self, keys: list[QueueKeys], limit: int, seconds: float) -> list[Delivery]:
        streams = [stream for k in keys for stream in k.bands_high_first]
        block_ms = max(1, int(min(seconds, self._link.longest_block) * 1000))
        read = self._link.wire.read_groups(GROUP, self.consumer.name, limit, block_ms, streams)
        for stream in read.unsure:  # cut short: what it delivered is read again next time
            self._reread.add(next(k.queue for k in keys if stream.startswith(k.tag)))
        got, bodiless = from_read(keys, read.reply)
        for entry in bodiless:  # as fetch.lua does with them
            self._settle_one(entry.delivery, "dead", entry.reason)
        # COUNT applies per stream: entries that landed in several bands at once can exceed
        # the limit. Keep the highest bands (replies come in request order), give back the rest.
        for extra in got[limit:]:
            self._settle_one(extra, "requeue", 0)
        return got[:limit]

    def _still_holds(self, delivery: Delivery) -> bool:
        """Whether the entry is pending for this consumer (release.lua moves an entry it
        takes back to a new id: the old one is then pending for no one)."""
        with self._link.errors():
            return self._link.pending_for(self.consumer.name, delivery.queue, delivery.receipt)

    def _ack_finished(self, acks: list[Delivery], delivery: Delivery) -> None:
        self._send_acks([*acks, delivery])

    def _store_and_ack(self, acks: list[Delivery], delivery: Delivery, result: ResultWrite) -> None:
        """The result write, the kept acks and the ack in one MULTI/EXEC on the `Wire`, one
        round trip, the result first, on the same connection (redis-py's pipeline costs this call
        more CPU than the round trip). The result goes by EVAL (store.lua, fenced by its run),
        the acks as plain commands: nothing a restarted server could have lost."""
        results = self._joined
        assert results is not None  # joins_results says so
        with self._link.errors():
            batch = Batch()
            results.queue_store(batch, result)
            self._link.send_acks(self.consumer.name, _owed([*acks, delivery]), batch)
            self._link.wire.send_transaction(batch)  # no ack without its result

    def _finish_atomically(
        self,
        acks: list[Delivery],
        delivery: Delivery,
        writes: tuple[ResultWrite, ...],
        effects: Effects,
    ) -> None:
        """One MULTI/EXEC: the writes, vote.lua (publishing `then` when it fires), the effects'
        messages, the kept acks and the ack. A server that lost the script runs the rest and
        answers NOSCRIPT for it: the vote is run again on its own, which loads it. It is safe
        to run again: if it ran and fired, its chord is done."""
        results = self._joined
        assert results is not None  # atomic_effects says so
        link, vote = self._link, effects.vote
        then = vote.then if vote is not None else ()
        with link.errors():
            for published in {m.queue for m in (*effects.publish, *then)}:
                link.ensure(published)
            pipe = link.client.pipeline(transaction=True)
            for w in writes:
                results.queue_store(pipe, w)
            call = None
            if vote is not None:
                call = results.vote_call(vote, [link.destination(m) for m in then])
                results.queue_vote(pipe, call)
            link.queue_publish(pipe, effects.publish)
            link.send_acks(self.consumer.name, _owed([*acks, delivery]), pipe)
            if script_missing(pipe.execute(raise_on_error=False)) and call is not None:
                results.run_vote(call)

    def _requeue(self, acks: list[Delivery], delivery: Delivery, delay: float) -> None:
        self._settle(acks, delivery, "requeue", int(max(0.0, delay) * 1000))

    def _dead_letter(self, acks: list[Delivery], delivery: Delivery, reason: str) -> None:
        self._settle(acks, delivery, "dead", reason)

    def _release(self, acks: list[Delivery], running: Sequence[str]) -> int:
        with self._link.errors():
            self._link.send_acks(self.consumer.name, _owed(acks))
            return self._link.release_everywhere(self.consumer.name, running)

    def _settle(
        self, acks: list[Delivery], delivery: Delivery, action: Action, arg: int | str
    ) -> None:
        """The kept acks, then settle.lua on `delivery`."""
        self._send_acks(acks)
        self._settle_one(delivery, action, arg)

    def _settle_one(self, delivery: Delivery, action: Action, arg: int | str) -> None:
        with self._link.errors():
            self._link.settle(self.consumer.name, delivery.queue, delivery.receipt, action, arg)


def _owed(acks: list[Delivery]) -> dict[str, list[str]]:
    return owed_by_queue((d.queue, d.receipt) for d in acks)
