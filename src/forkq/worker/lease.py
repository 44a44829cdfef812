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

import hashlib
import logging
import time

from forkq.engines.contract import ConsumerSession, Delivery, Fence, attempt_of
from forkq.envelope import Message

log = logging.getLogger("forkq.worker")

#: What observers hear of a run whose outcome was not stored (its events' reason).
LOST_LEASE = "lost its lease to another worker: its outcome not stored"


def owned(session: ConsumerSession, delivery: Delivery, then: str) -> bool:
    """Whether the session still holds `delivery`; if not, a warning that says so and what is
    left undone (`then`)."""
    if session.still_holds(delivery):
        return True
    held = time.monotonic() - delivery.held_since
    log.warning(
        "message %s of queue %s lost its lease to another worker (held %.1f s: this worker "
        "was cut off from the broker for longer than it keeps a silent worker's messages): %s",
        delivery.receipt,
        delivery.queue,
        held,
        then,
    )
    return False


def run_fence(message: Message, delivery: Delivery) -> Fence:
    """The run this delivery of `message` is, as its result writes carry it: its sending (the
    task id, creation time and origin: the same for every delivery and retry, new when the id
    is sent again) and its attempt (the try, then the delivery's starts)."""
    sent = f"{message.id}\0{message.created_at!r}\0{message.origin}".encode()
    sending = hashlib.blake2b(sent, digest_size=8).hexdigest()
    return Fence(sending, attempt_of(message.retries, delivery.delivery_count))
