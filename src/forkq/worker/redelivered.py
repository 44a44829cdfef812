"""What a redelivered message's stored record says of it, read once, before it runs.

A redelivery (`Delivery.returned`, or `delivery_count` above 1) follows a crash: of the
process that ran it, of its worker, or of a server that came back without the acks it had
taken since it last wrote them (RabbitMQ killed, Redis restarted without fsyncing its AOF, a
Sentinel failover). A first delivery pays nothing: the read is for redeliveries only.

    redelivery ─► its record ─┬─ REVOKED ──────────────────────────► REVOKED: discard, not run
                              ├─ FAILURE TimeLimitExceeded ─────────► refused: dead letter
                              ├─ SUCCESS or FAILURE written by a run
                              │  of this sending, not a workflow's ──► DONE: ack, not run again
                              └─ anything else ─────────────────────► RUN

DONE: a run of this very sending (`ResultRecord.sending`, the digest `run_fence` fences its
writes with: the same for every delivery and retry of one message, new when the task id is
sent again) stored its final outcome, then its ack was lost. The record is stored before the
ack, so the task ran to its end; running it again would only repeat it. Not so for:
- a workflow's step (`Message.flow`): its effects (the next step, a chord's vote) are done
  after its record is stored, so a crash in between leaves them undone, and running it
  again is what does them;
- a RETRY record (the next try may not have been sent), STARTED, or no record at all;
- a record of another sending (the id sent again) or of no run (the master's verdict, a
  rejection: a requeued dead letter runs afresh).
"""

from __future__ import annotations

import enum
import logging

from forkq.engines.contract import Delivery, ResultBackend
from forkq.envelope import Message
from forkq.exceptions import MessageRejected, Rejection, TimeLimitExceeded
from forkq.result import decode_record
from forkq.states import FAILURE, REVOKED, SUCCESS
from forkq.worker.lease import run_fence

log = logging.getLogger("forkq.worker")

#: What observers hear of a redelivery acked because its task ran to its end before.
DONE_BEFORE = "ran to its end before (its result is stored): acked, not run again"


class Earlier(enum.Enum):
    """What a delivery's stored record says to do with it."""

    RUN = enum.auto()  # a first delivery, or nothing stored that settles it
    REVOKED = enum.auto()  # revoked (and terminated, if it was running): discarded
    DONE = enum.auto()  # ran to its end in a run of this sending: acked, not run again


def redelivered(delivery: Delivery) -> bool:
    return delivery.returned or delivery.delivery_count > 1


def earlier(results: ResultBackend, message: Message, delivery: Delivery) -> tuple[Earlier, str]:
    """For a redelivery, one read of its result: what to do, and the state stored ("" when
    it settles nothing; a first delivery is not read).

    Revoked and terminated (REVOKED stored): to be discarded, whether or not this child's
    revoked ids have it yet (a worker on another host may not have read them since). The
    master gives the message back counted, as a task whose process died.

    Killed for its hard time limit (FAILURE `TimeLimitExceeded` stored, by the master):
    refused, `MessageRejected`. Where the engine recovers by connection (RabbitMQ) the master
    cannot dead-letter the message, and the server brings it back as a returned delivery.
    Where the master releases, its release buries the message, unless that release never
    landed (an outage that outlasted the lease, or the whole worker dying in between) and the
    lease brought it back. Either way it is dead-lettered, not run again."""
    if not redelivered(delivery):
        return Earlier.RUN, ""
    stored = results.get(message.id)
    if stored is None or stored.state not in (REVOKED, SUCCESS, FAILURE):
        return Earlier.RUN, ""
    if stored.state == REVOKED:
        return Earlier.REVOKED, REVOKED
    try:
        record = decode_record(stored.payload)
    except Exception:  # a junk record settles nothing
        return Earlier.RUN, ""
    if record.state == FAILURE and record.exc_type == TimeLimitExceeded.__name__:
        reason = record.exc_message or "hard time limit exceeded"
        raise MessageRejected(reason, message.id, kind=Rejection.KILLED_FOR_TIME)
    if message.flow is None and record.sending == run_fence(message, delivery).sending:
        log.info("task %s[%s] %s", message.task, message.id, DONE_BEFORE)
        return Earlier.DONE, record.state
    return Earlier.RUN, ""
