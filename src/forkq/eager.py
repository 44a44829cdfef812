"""Eager mode (`Forkq(..., eager=True)`, `FORKQ_EAGER=1`): publishing a task runs it in the
calling process, at once, the way a worker would.

    encode ─► decode ─► accept ─► execute ─┬─► SUCCESS / FAILURE ─► in-process backend
      ▲                (forkq.calling)      │     └─► a workflow's effects (forkq.canvas):
      │                                     │         the messages they send, run in turn
      │                                     └─► RETRY ─► next try, encoded ─┐ (at once)
      └─────────────────────────────────────────────────────────────────────┘

The message goes through the codec both ways, so an argument JSON cannot hold fails in the
caller as it would in production, and the task gets what a worker's task would get. The
outcome is what a worker would store: a retry runs again at once (its countdown is not
waited), up to the task's limit; a rejected message (unknown task, expired) fails with its
reason; an `ignore_result` task's success is not stored. What differs: no time limits (they
are signals and processes of a worker's own), no redelivery, and results go to a backend in
this process (`memory://`), so `AsyncResult.get()` needs no server.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING

from forkq.calling import accept, execute, next_try, refused_retry
from forkq.canvas.effects import apply_effects, effects_of, rejection_effects, stores_result
from forkq.engines.contract import Effects, ResultWrite
from forkq.envelope import Message
from forkq.exceptions import ConfigurationError, MessageRejected
from forkq.result import ResultRecord, encode_storable, failure_record
from forkq.states import FAILURE, RETRY

if TYPE_CHECKING:
    from forkq.app import Forkq

log = logging.getLogger("forkq.eager")

# Ctrl-C in a test run is the person's, not the task's: it stops the run.
_CALLERS = (KeyboardInterrupt,)


def backend_url(app: Forkq) -> str:
    """Where an eager app's results live: this process, one store per app name."""
    return f"memory://forkq-eager/{app.main}"


def run_eagerly(app: Forkq, body: bytes) -> None:
    """Run the encoded message's task here, retries included, and store its outcome; then
    the messages its workflow sends on (next steps, callbacks, a chord's body), in the order
    they are sent, in a loop rather than by recursion."""
    pending = deque([body])
    while pending:
        pending.extend(_run(app, pending.popleft()))


def _run(app: Forkq, body: bytes) -> list[bytes]:
    """One message, retries included: the bodies of the messages its effects send."""
    while True:
        message = None
        try:
            message = app.codec.decode(body)
            message, task = accept(app, message)
        except MessageRejected as rejected:
            return _rejected(app, message, rejected)
        record = execute(task, message, passthrough=_CALLERS)
        if record.state != RETRY:
            break
        try:
            body = app.codec.encode(next_try(message, record))
        except ConfigurationError as exc:
            record = refused_retry(message, exc)
            break
    effects = None
    if message.flow is not None:
        record, effects = effects_of(app, message, record)
    keep = record.state == FAILURE or not task.ignores_result or stores_result(message)
    return _finish(app, _write(app, message.id, record) if keep else None, effects)


def _rejected(app: Forkq, message: Message | None, rejected: MessageRejected) -> list[bytes]:
    log.warning("eager: rejected message: %s", rejected.reason)
    failed = rejected.failed_task_id
    write = None
    if failed is not None:
        write = _write(app, failed, failure_record(rejected.exc_type, rejected.reason))
    effects = None if message is None else rejection_effects(app, message, rejected)
    return _finish(app, write, effects)


def _finish(app: Forkq, write: ResultWrite | None, effects: Effects | None) -> list[bytes]:
    sent: list[bytes] = []
    apply_effects(app.backend, lambda out: sent.extend(o.body for o in out), write, effects)
    return sent


def _write(app: Forkq, task_id: str, record: ResultRecord) -> ResultWrite:
    record, payload = encode_storable(record)
    return ResultWrite(task_id, record.state, payload, app.settings.result_ttl)
