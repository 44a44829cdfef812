"""Eager mode (`Forkq(..., eager=True)`, `FORKQ_EAGER=1`): publishing a task runs it in the
calling process, at once, the way a worker would.

    encode ─► decode ─► accept ─► execute ─┬─► SUCCESS / FAILURE ─► in-process backend
      ▲                (forkq.calling)      └─► RETRY ─► next try, encoded ─┐ (at once)
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
from typing import TYPE_CHECKING

from forkq.calling import accept, execute, next_try, refused_retry
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
    """Run the encoded message's task here, retries included, and store its outcome."""
    while True:
        try:
            message, task = accept(app, app.codec.decode(body))
        except MessageRejected as rejected:
            log.warning("eager: rejected message: %s", rejected.reason)
            failed = rejected.failed_task_id
            if failed is not None:
                _store(app, failed, failure_record(rejected.exc_type, rejected.reason))
            return
        record = execute(task, message, passthrough=_CALLERS)
        if record.state != RETRY:
            break
        try:
            body = app.codec.encode(next_try(message, record))
        except ConfigurationError as exc:
            record = refused_retry(message, exc)
            break
    if record.state == FAILURE or not task.ignores_result:
        _store(app, message.id, record)


def _store(app: Forkq, task_id: str, record: ResultRecord) -> None:
    record, payload = encode_storable(record)
    app.backend.store(task_id, record.state, payload, app.settings.result_ttl)
