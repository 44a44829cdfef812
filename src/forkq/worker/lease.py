"""A delivery this child may no longer own: a lease engine gives a message to another worker
once its holder's worker has been cut off from the broker for longer than lease_ttl (its
heartbeat expired while the message was held that long). When the link returns, the child must
neither start such a message nor store or ack anything for it: the other worker runs it, and
its result is the one that stands.

`ConsumerSession.still_holds` answers without a round trip for a delivery held less than half
a lease, so ordinary short tasks pay nothing; a longer-held one is asked about before it starts
and before its outcome is stored and acked. A write that passed the check and lands late
anyway (sent just before the cut, delivered when the link returns) is refused by the result
backend: every write of a run carries its attempt (`attempt_of`), and a record written by a
newer run is never overwritten by an older one (`ResultBackend.store`).
"""

from __future__ import annotations

import logging
import time

from forkq.engines.contract import ConsumerSession, Delivery

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
