"""Acks a Redis consumer has not sent yet: see "Round trips" in `forkq.engines.redis.broker`.

A finished task without a result to store has nothing to write but its ack. Sending each ack
on its own costs a round trip per task; instead the acks wait here and ride with the next
fetch script (one round trip for a whole batch), or go on their own when too many wait or the
oldest has waited too long. Waiting acks are at risk only if the whole worker dies: the master
of a child that dies acks, from the scoreboard, what the child had finished
(`RedisBroker.release`), so a child's crash re-runs only the task it was running.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

import msgspec

from forkq.engines.contract import Consumer, Delivery

MAX_WAITING = 64  # acks: beyond this they are sent at once
MAX_WAIT = 0.05  # seconds the oldest may wait before the acks are sent at once


class WaitingAcks(msgspec.Struct):
    consumer: Consumer | None = None
    by_queue: dict[str, list[str]] = msgspec.field(default_factory=dict)  # queue -> receipts
    oldest: float = 0.0  # monotonic time of the first waiting ack

    @classmethod
    def of(cls, consumer_name: str, finished: Iterable[tuple[str, str]]) -> WaitingAcks:
        """The acks a consumer (a dead child) owed for its finished (queue, receipt) pairs."""
        waiting = cls()
        owner = Consumer(consumer_name.split("/")[0], consumer_name)
        for queue, receipt in finished:
            waiting.add(owner, Delivery(receipt, queue, b"", 0))
        return waiting

    def add(self, consumer: Consumer, delivery: Delivery) -> None:
        if not self.by_queue:
            self.consumer, self.oldest = consumer, time.monotonic()
        self.by_queue.setdefault(delivery.queue, []).append(delivery.receipt)

    def pairs(self) -> list[tuple[str, str]]:
        """(queue, receipt) of every waiting ack."""
        return [(queue, r) for queue, receipts in self.by_queue.items() for r in receipts]

    def overdue(self) -> bool:
        waiting = sum(len(receipts) for receipts in self.by_queue.values())
        return waiting >= MAX_WAITING or time.monotonic() - self.oldest > MAX_WAIT

    def take(self, consumer: Consumer, queue: str) -> list[str]:
        """[band, id, band, id, ...] of the acks `consumer` owes for `queue`."""
        if consumer != self.consumer or queue not in self.by_queue:
            return []
        return [part for receipt in self.by_queue.pop(queue) for part in receipt.split("-", 1)]

    def restore(self, consumer: Consumer, queue: str, taken: list[str]) -> None:
        """Acks `take` returned whose send failed wait again: the script may not have run, and
        running it twice is harmless (XACK and XDEL skip what is gone)."""
        if not taken or (self.by_queue and consumer != self.consumer):
            return
        if not self.by_queue:
            self.consumer, self.oldest = consumer, time.monotonic()
        receipts = [f"{band}-{entry}" for band, entry in zip(taken[::2], taken[1::2], strict=True)]
        self.by_queue.setdefault(queue, [])[:0] = receipts

    def take_all(self) -> Iterator[tuple[Consumer, str, list[str]]]:
        while self.consumer is not None and self.by_queue:
            consumer, queue = self.consumer, next(iter(self.by_queue))
            yield consumer, queue, self.take(consumer, queue)
