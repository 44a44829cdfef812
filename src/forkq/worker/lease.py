"""A delivery this child may no longer own: a lease engine gives a message to another worker
once its holder's worker has been cut off from the broker for longer than lease_ttl (its
heartbeat expired while the message was held that long; RabbitMQ: see the end). When the link
returns, the child must neither start such a message nor store or ack anything for it: the
other worker runs it, and its result is the one that stands.

`ConsumerSession.still_holds` answers without a round trip for a delivery held less than its
`unchallenged_for` (half a lease; RabbitMQ: a second), so ordinary short tasks pay nothing; a
longer-held one is asked about before it starts and before its outcome is stored and acked. A
write that passed the check and lands late anyway (sent just before the cut, delivered when
the link returns) is refused by the result backend: every write of a run carries its `Fence`
(`run_fence`), and a record written by a newer run of the same sending is never overwritten by
an older one (`ResultBackend.store`).

RabbitMQ has no lease: it takes a message back when the holder's connection closes, which it
does for a connection silent past its heartbeat timeout; the check and the fence work the same.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import time
from typing import NamedTuple

from forkq.engines.contract import ConsumerSession, Delivery, Fence, attempt_of
from forkq.envelope import Message

log = logging.getLogger("forkq.worker")

#: What observers hear of a run whose outcome was not stored (its events' reason).
LOST_LEASE = "lost its lease to another worker: its outcome not stored"


class Hold(enum.Enum):
    """Whether a child still holds a delivery (`hold_of`)."""

    HELD = "held"
    TAKEN = "taken"  # its worker taken for dead: another may run it; nothing of it is stored
    GIVEN_BACK = "given back"  # the broker took it back to deliver again (consumer_timeout)


def hold_of(session: ConsumerSession, delivery: Delivery, then: Then) -> Hold:
    """Whether the session still holds `delivery`; if not, a warning that says why and what
    becomes of it (`then`: what is done, taken over or given back)."""
    if session.still_holds(delivery):
        return Hold.HELD
    held = time.monotonic() - delivery.held_since
    if session.gave_back(delivery):
        log.error(
            "RabbitMQ closed the channel of message %s of queue %s (held %.1f s, the "
            "connection still open): it held the delivery longer than consumer_timeout (30 "
            "min by default; raise it in rabbitmq.conf, or per queue with the "
            "x-consumer-timeout argument or a consumer-timeout policy on RabbitMQ 3.12+) and "
            "delivers it again: %s",
            delivery.receipt,
            delivery.queue,
            held,
            then.given_back,
        )
        return Hold.GIVEN_BACK
    log.warning(
        "message %s of queue %s lost its lease to another worker (held %.1f s: this worker "
        "was cut off from the broker for longer than it keeps a silent worker's messages): %s",
        delivery.receipt,
        delivery.queue,
        held,
        then.taken,
    )
    return Hold.TAKEN


class Then(NamedTuple):
    """What becomes of a delivery no longer held, as the warning says it."""

    taken: str
    given_back: str


BEFORE_START = Then("not started here", "not started here")
AT_FINISH = Then(
    "its outcome not stored, not acked",
    "its outcome stored, not acked: delivered again, it is acked without running again",
)


def run_fence(message: Message, delivery: Delivery) -> Fence:
    """The run this delivery of `message` is, as its result writes carry it: its sending (the
    task id, creation time and origin: the same for every delivery and retry, new when the id
    is sent again) and its attempt (the try, then the delivery's starts)."""
    sent = f"{message.id}\0{message.created_at!r}\0{message.origin}".encode()
    sending = hashlib.blake2b(sent, digest_size=8).hexdigest()
    return Fence(sending, attempt_of(message.retries, delivery.delivery_count))
