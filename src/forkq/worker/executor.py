"""Turning one delivery into one outcome, inside a child.

    delivery ─► slot: taken ─► decode ─► checks ─► run task* ─► store result ─► ack
                                 │          │           ├─► Retry: publish the next try ─► RETRY
                                 └──────────┴─► rejected: store FAILURE (if the id is trusted)
                                                          ─► dead letter

A task's exception never leaves `handle`: it becomes a FAILURE record, and whatever the bytes
hold, decoding ends in a rejection. The slot names the message before its bytes are read, so
a child that dies at any stage of handling it (a crash in a C extension, the OOM killer) is
charged with it: the master releases it counted, and the redelivery limit ends it. The limit
is checked before decoding too, in case decoding itself is what kills the process. The result
is stored before the ack, so a crash between the two redelivers the task rather than losing
its result. (*) in the child itself, or with `--max-tasks-per-child 1` in a process of its own
(task_process.py).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Collection
from functools import partial

import msgspec

from forkq.app import Forkq
from forkq.backends import ResultBackend, ResultWrite
from forkq.brokers import Broker, Consumer, Delivery
from forkq.envelope import Message, readable_time
from forkq.exceptions import ConfigurationError, MessageRejected, Retry, TimeLimitExceeded
from forkq.pool.child import Stopping
from forkq.pool.scoreboard import SlotWriter
from forkq.result import (
    ResultRecord,
    decode_record,
    encode_storable,
    exception_record,
    failure_record,
    success_record,
)
from forkq.states import FAILURE, RETRY, STARTED
from forkq.task import Request, Task
from forkq.worker.limits import TimeLimits, soft_time_limit
from forkq.worker.task_process import TaskProcessDied

log = logging.getLogger("forkq.worker")

# The task names an unknown-task reason lists at most, and their characters (the whole reason
# must stay well within MAX_REASON).
UNKNOWN_TASK_NAMES = 10
UNKNOWN_TASK_CHARS = 400

# How long the starts of a returned message are remembered after its last one.
RETURNED_STARTS_TTL = 7 * 24 * 3600.0

TaskRunner = Callable[[Callable[[], ResultRecord]], ResultRecord]


def run_here(call: Callable[[], ResultRecord]) -> ResultRecord:
    """The default `TaskRunner`: the task runs in the child itself."""
    return call()


class Executor:
    def __init__(
        self,
        app: Forkq,
        broker: Broker,
        backend: ResultBackend,
        consumer: Consumer,
        slot: SlotWriter,
        limits: TimeLimits | None = None,
        run_task: TaskRunner = run_here,
    ) -> None:
        self.app = app
        self.run_task = run_task
        self.limits = limits or TimeLimits()
        self.broker = broker
        self.backend = backend
        self.consumer = consumer
        self.slot = slot
        self.ttl = app.settings.result_ttl

    def handle(self, delivery: Delivery) -> None:
        self.slot.taken(delivery.receipt)
        if not delivery.returned:
            self._handle(delivery)
            return
        key = returned_key(delivery.body)
        earlier = self.backend.count_start(key, RETURNED_STARTS_TTL) - 1
        self._handle(
            msgspec.structs.replace(delivery, delivery_count=delivery.delivery_count + earlier)
        )
        # Done with: a copy of the same bytes sent again (a requeued dead letter) counts anew.
        self.backend.forget_starts(key)

    def _handle(self, delivery: Delivery) -> None:
        try:
            message, task = self._accept(delivery)
        except MessageRejected as rejected:
            self._reject(delivery, rejected)
            self.slot.finished(failed=True, unacked=self.broker.kept_acks())
            return
        limits = self.limits.for_task(task)
        self.slot.busy(message.id, message.task, delivery.receipt, delivery.queue, limits.hard)
        try:
            record = self._run(task, message, delivery, limits.soft)
        except TaskProcessDied as died:
            if not died.charged:  # it never ran (a hook failed): back, not counted as run
                self.broker.requeue(self.consumer, delivery)
                self.slot.idle()
            raise
        if record.state == RETRY:
            record = self._publish_retry(message, record)
        write = None
        # Failures are stored even for ignore_result tasks: errors must stay visible.
        if record.state == FAILURE or not self._ignores_result(task):
            record, write = self._result_write(message.id, record)
        self.broker.finish(self.consumer, delivery, write, self.backend)
        self.slot.finished(failed=record.state == FAILURE, unacked=self.broker.kept_acks())

    def _accept(self, delivery: Delivery) -> tuple[Message, Task]:
        if delivery.delivery_count > 1 and delivery.delivery_count > self._most_deliveries() + 1:
            # Over every task's limit, and the last try to reject it died too: decoding it
            # may be what kills the process, so it goes without being read.
            task_id = self.app.codec.trusted_id(delivery.body)  # found without decoding
            raise _worker_lost(delivery.delivery_count, self._most_deliveries(), task_id)
        message = self.app.codec.decode(delivery.body)
        task = self.app.tasks.get(message.task)
        if task is None:
            raise MessageRejected(unknown_task(message.task, self.app.tasks), message.id)
        if message.expires is not None and message.expires < time.time():
            raise MessageRejected(f"expired at {readable_time(message.expires)}", message.id)
        if delivery.delivery_count > 1:
            self._refuse_if_killed_for_time(message)
        limit = task.options.max_deliveries or self.app.settings.max_deliveries
        if delivery.delivery_count > limit:
            raise _worker_lost(delivery.delivery_count, limit, message.id)
        return message, task

    def _most_deliveries(self) -> int:
        """The highest redelivery limit any registered task has."""
        own = (t.options.max_deliveries or 0 for t in self.app.tasks.values())
        return max([self.app.settings.max_deliveries, *own])

    def _refuse_if_killed_for_time(self, message: Message) -> None:
        """A message back after its process was killed for its hard time limit: the master
        stored that FAILURE. Engines that recover by connection (RabbitMQ) bring the message
        back; it is dead-lettered here instead of running again."""
        stored = self.backend.get(message.id)
        if stored is None or stored.state != FAILURE:
            return
        try:
            record = decode_record(stored.payload)
        except Exception:  # a junk record is no verdict of the master's
            return
        if record.exc_type == TimeLimitExceeded.__name__:
            reason = record.exc_message or "hard time limit exceeded"
            raise MessageRejected(reason, None)  # its FAILURE is stored already

    def _reject(self, delivery: Delivery, rejected: MessageRejected) -> None:
        log.warning("dead-lettering message %s: %s", delivery.receipt, rejected.reason)
        if rejected.task_id is not None and rejected.trusted:
            self._store(rejected.task_id, failure_record(rejected.exc_type, rejected.reason))
        self.broker.dead_letter(self.consumer, delivery, rejected.reason)

    def _run(
        self, task: Task, message: Message, delivery: Delivery, soft_limit: float | None
    ) -> ResultRecord:
        if self.app.settings.track_started and not self._ignores_result(task):
            self._store(message.id, msgspec.structs.replace(success_record(None), state=STARTED))
        task.request = Request(
            message.id, message.retries, message.queue, delivery.delivery_count, message.headers
        )
        try:
            return self.run_task(partial(self._call, task, message, soft_limit))
        finally:
            task.request = Request()

    def _call(self, task: Task, message: Message, soft_limit: float | None) -> ResultRecord:
        """The task itself: in this process, or in one of its own (`run_task`)."""
        started = time.perf_counter()
        try:
            with soft_time_limit(soft_limit):
                value = task(*message.args, **message.kwargs)
        except Stopping:
            raise
        except Retry as retry:
            return self._retry_record(retry, message)
        except BaseException as exc:
            log.warning(
                "task %s[%s] raised %s: %s", message.task, message.id, type(exc).__name__, exc
            )
            return exception_record(exc, message.retries)
        log.info(
            "task %s[%s] succeeded in %.4fs",
            message.task,
            message.id,
            time.perf_counter() - started,
        )
        return success_record(value, message.retries)

    def _retry_record(self, retry: Retry, message: Message) -> ResultRecord:
        cause = retry.exc
        log.info("task %s[%s] retry in %.2fs", message.task, message.id, retry.countdown)
        return ResultRecord(
            state=RETRY,
            exc_type=type(cause).__qualname__ if cause else None,
            exc_message=str(cause) if cause else None,
            retries=message.retries,
            date_done=time.time() + retry.countdown,  # when the next try is due
        )

    def _publish_retry(self, message: Message, record: ResultRecord) -> ResultRecord:
        """The next try, published; a retry that cannot be scheduled (a countdown of 200
        years, say) fails the task instead."""
        due = record.date_done or time.time()
        try:
            self.app.publish(msgspec.structs.replace(message, retries=message.retries + 1, eta=due))
        except ConfigurationError as exc:
            return failure_record("RetryRefused", str(exc), retries=message.retries)
        return record

    def _ignores_result(self, task: Task) -> bool:
        own = task.options.ignore_result
        return self.app.settings.ignore_result if own is None else own

    def _store(self, task_id: str, record: ResultRecord) -> None:
        _, write = self._result_write(task_id, record)
        self.backend.store(write.task_id, write.state, write.payload, write.ttl)

    def _result_write(self, task_id: str, record: ResultRecord) -> tuple[ResultRecord, ResultWrite]:
        record, payload = encode_storable(record)
        return record, ResultWrite(task_id, record.state, payload, self.ttl)


def _worker_lost(deliveries: int, limit: int, task_id: str | None) -> MessageRejected:
    return MessageRejected(
        f"worker lost: the process handling it died {deliveries - 1} time(s), the limit is {limit}",
        task_id,
        exc_type="WorkerLost",
    )


def unknown_task(name: str, known: Collection[str]) -> str:
    """The reason for a task this worker does not have: with some of the names it does have,
    so a worker started on the wrong module (or none) says so in every dead letter. A name
    longer than any task's is junk: it is quoted alone (and cut short by MessageRejected)."""
    if len(name) > UNKNOWN_TASK_CHARS:
        return f"unknown task {name!r}"
    if not known:
        return f"unknown task {name!r}: this worker has no tasks (see its start-up warning)"
    names = sorted(known)
    listed: list[str] = []
    length = 0
    for task in names[:UNKNOWN_TASK_NAMES]:
        length += len(task) + 2
        if listed and length > UNKNOWN_TASK_CHARS:
            break
        listed.append(task[:UNKNOWN_TASK_CHARS])
    more = f" and {len(names) - len(listed)} more" if len(listed) < len(names) else ""
    return f"unknown task {name!r}; this worker has {', '.join(listed)}{more}"


def returned_key(body: bytes) -> str:
    """What a returned message's starts are counted under: a digest of its bytes, which
    stay the same however often it comes back."""
    return hashlib.blake2b(body, digest_size=16).hexdigest()
