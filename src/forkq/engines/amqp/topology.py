"""Every RabbitMQ name and argument forkq uses, in one place. `prefix` defaults to "forkq"
(URL `?prefix=`); names are plain AMQP names, so any vhost works.

    P.Q               a work queue per forkq queue Q: durable; classic with x-max-priority 9
                      (the default) or quorum (`?queue_type=quorum`: replicated, no priorities
                      on RabbitMQ before 3.12); messages RabbitMQ itself rejects are
                      dead-lettered to P.dead
    P.dead            one durable queue of dead letters for every Q of the prefix; headers
                      x-forkq-queue, x-forkq-reason, x-forkq-failed-at (ms), message_id = the
                      letter's receipt; x-max-length and x-message-ttl from the dead-letter
                      caps (the oldest go first). One declared without them, or with other
                      values (an older forkq, other settings), is used as it is: RabbitMQ
                      refuses to declare a queue again with other arguments
    P.seen.Q          the heartbeats of the workers that consume Q, for `consumers_seen`: one
                      message each (body: the worker id; header x-forkq-seen: when, in ms), the
                      latest SEEN_KEPT kept a day (x-max-length, x-message-ttl)
    P.delay           a headers exchange; a delayed message carries forkq-bucket = its
                      delay in ms (rounded down to two significant digits) and is routed to:
    P.delay.MS        one queue per bucket: x-message-ttl = MS, dead-lettering to the default
                      exchange with the message's own routing key (P.Q), so expiry moves it to
                      its queue; x-expires lets a bucket no one uses vanish (the bucket
                      header has no "x-" prefix: headers exchanges ignore those)

Control (`forkq.engines.amqp.control`):

    P.control         a fanout exchange (not durable) of control requests
    P.control.agent.NAME.HEX  an agent's queue: exclusive, auto-delete, bound to P.control
    amq.gen-...       a client's inbox: exclusive, server-named; replies go to it by the
                      default exchange
    P.control.members a stream (`x-queue-type: stream`): each agent's announcements and its
                      withdrawal (JSON records), read without taking them from the
                      `PRESENCE_KEPT` before the read to a probe the reader appends; kept
                      twice that long in small segments (a stream takes no x-expires)

Message headers: x-forkq-starts (times a process started it and died, as known when forkq
published it; a redelivered message's later starts are counted by the executor),
x-forkq-due (ms since the epoch; a message that arrives early, after the rounding, goes round
the delay queues again for the rest; at most MAX_DELAY_MS ahead, about 1,500 hops).
Reading them: `forkq.engines.amqp.reading`.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from forkq.engines.contract import DEFAULT_DEAD_CAPS, MAX_DELAY, PRESENCE_KEPT, DeadLetterCaps

MAX_PRIORITY = 9
MAX_HOP_MS = 2**31 - 1  # the largest x-message-ttl: longer delays take several hops
YEAR_MS = 31_557_600_000  # a Julian year
MAX_DELAY_MS = int(MAX_DELAY * 1000)  # a message due later than this is refused
DECLARE_AGAIN_AFTER = 600.0  # seconds; a bucket's x-expires is its delay plus an hour
BUCKET_EXPIRES_MS = 3_600_000
SEEN_KEPT = 1000  # heartbeats kept per queue: 100 workers beating every 10 s show 100 s
DAY_MS = 86_400_000
MEMBERS_SEGMENT_BYTES = 200_000  # a stream drops whole segments only: small ones age out


def bucket_ms(delay_ms: int) -> int:
    """The delay queue for a delay: rounded down to two significant digits (never late; up to
    10% early, the rest then goes round again), at least 1 ms, at most one hop."""
    delay_ms = max(1, min(MAX_HOP_MS, delay_ms))
    if delay_ms < 100:
        return delay_ms
    scale = 10 ** (int(math.log10(delay_ms)) - 1)
    return int((delay_ms // scale) * scale)


class Topology(msgspec.Struct, frozen=True):
    prefix: str
    quorum: bool = False
    expires_ms: int | None = None  # x-expires of work and dead queues (tests: unused ones go)
    dead_caps: DeadLetterCaps = DEFAULT_DEAD_CAPS

    def queue(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def name_of(self, amqp_queue: str) -> str:
        return amqp_queue[len(self.prefix) + 1 :]

    @property
    def dead(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def delay_exchange(self) -> str:
        return f"{self.prefix}.delay"

    def seen_queue(self, queue: str) -> str:
        return f"{self.prefix}.seen.{queue}"

    def seen_arguments(self) -> dict[str, Any]:
        return {
            "x-max-length": SEEN_KEPT,
            "x-message-ttl": DAY_MS,
            "x-expires": self.expires_ms or DAY_MS + BUCKET_EXPIRES_MS,
        }

    @property
    def control_exchange(self) -> str:
        return f"{self.prefix}.control"

    def agent_queue(self, name: str, nonce: str) -> str:
        return f"{self.prefix}.control.agent.{name}.{nonce}"

    @property
    def members_stream(self) -> str:
        return f"{self.prefix}.control.members"

    def members_arguments(self) -> dict[str, Any]:
        return {
            "x-queue-type": "stream",
            "x-max-age": f"{int(2 * PRESENCE_KEPT)}s",
            "x-stream-max-segment-size-bytes": MEMBERS_SEGMENT_BYTES,
        }

    def delay_queue(self, bucket: int) -> str:
        return f"{self.prefix}.delay.{bucket}"

    def work_arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.dead,
        }
        if self.quorum:
            args["x-queue-type"] = "quorum"
        else:
            args["x-max-priority"] = MAX_PRIORITY
        return self._expiring(args)

    def dead_arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if self.dead_caps.max_count:
            args["x-max-length"] = self.dead_caps.max_count
        if self.dead_caps.max_age_ms:
            args["x-message-ttl"] = self.dead_caps.max_age_ms
        return self._expiring(args)

    def delay_arguments(self, bucket: int) -> dict[str, Any]:
        return {
            "x-message-ttl": bucket,
            "x-dead-letter-exchange": "",
            "x-expires": bucket + min(BUCKET_EXPIRES_MS, self.expires_ms or BUCKET_EXPIRES_MS),
        }

    def _expiring(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.expires_ms is not None:
            args["x-expires"] = self.expires_ms
        return args
