"""Turning one delivery into one outcome, inside a child.

    delivery ─► slot: taken ─► decode ─► checks ─► run task* ─► store result ─► ack
                                 │          │  │        ├─► Retry: the next try ─► RETRY
                                 │          │  │        └─► a workflow's step: its effects
                                 │          │  └─► revoked: store REVOKED ─► ack (not run)
                                 └──────────┴─► rejected: store FAILURE (see MessageRejected)
                                                          ─► dead letter

A retry's next try and a workflow's effects (forkq.canvas.effects: the next step, callbacks,
a chord's vote, the failure of what will not run now) go to `session.finish` with the result,
which does them before the ack; a plain message's finish is only its result and ack.

A task's exception never leaves `handle`: it becomes a FAILURE record, and whatever the bytes
hold, decoding ends in a rejection. The slot names the message before its bytes are read, so
a child that dies at any stage of handling it (a crash in a C extension, the OOM killer) is
charged with it: the master releases it counted, and the redelivery limit ends it. The limit
is checked before decoding too, in case decoding itself is what kills the process. The result
is stored before the ack, so a crash between the two redelivers the task rather than losing
its result; a server too full to store it is waited out, the outcome kept (full.py). (*) in
the child itself, or with `--max-tasks-per-child 1` in a process of its own
(task_process.py), whose death (`TaskProcessDied`) the consume loop handles. Accepting a
decoded message and running its task are `forkq.calling`'s, which eager mode shares.

Everything goes through the child's one `ConsumerSession`: it settles the delivery, and its
`results` is where results are stored.

A redelivery is read against its stored record first (redelivered.py: one read, for
redeliveries only): revoked, killed for its time limit, or run to its end already by a run of
this sending (acked, not run again: its ack was lost, not its outcome).

A revoked task (its id in the child's `RevokedIds`, revoked.py: no round trip) is discarded
right after the checks: REVOKED stored and the message acked, its workflow failed downstream,
its unique lock let go. So is a delayed message revoked while it waited, when it comes due.

A task with a rate or concurrency limit is admitted between the checks and the run
(admission.py); over a limit its message is requeued to wait in the broker, and `handle` says
so (False), for the consume loop's prefetch sizing.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from functools import partial

import msgspec

from forkq.app import Forkq
from forkq.calling import accept, execute, next_try, refused_retry
from forkq.canvas.effects import apply_effects, effects_of, rejection_effects, stores_result
from forkq.engines.contract import ConsumerSession, Delivery, Effects, Fence, ResultWrite
from forkq.envelope import Message
from forkq.exceptions import ConfigurationError, MessageRejected, Rejection, TaskRevoked
from forkq.pool.child import Stopping, Terminated
from forkq.pool.scoreboard import SlotWriter
from forkq.result import (
    ResultRecord,
    encode_storable,
    failure_record,
    revoked_record,
)
from forkq.states import FAILURE, RETRY, REVOKED, STARTED
from forkq.task import Task
from forkq.throttle import Throttle
from forkq.unique import unlock_at_end, unlock_at_start
from forkq.worker.admission import Admission
from forkq.worker.full import finish_when_room, unless_full
from forkq.worker.lease import AT_FINISH, BEFORE_START, LOST_LEASE, Hold, hold_of, run_fence
from forkq.worker.limits import TimeLimits, call_within_soft_limit
from forkq.worker.observe import Observers, Rejected
from forkq.worker.redelivered import DONE_BEFORE, Earlier, earlier
from forkq.worker.revoked import RevokedIds

log = logging.getLogger("forkq.worker")

# How long the starts of a returned message are remembered after its last one.
RETURNED_STARTS_TTL = 7 * 24 * 3600.0
NOT_RUN = "not run"  # what became of a revoked task discarded here (its REVOKED record says)

TaskRunner = Callable[[Callable[[], ResultRecord]], ResultRecord]


def run_here(call: Callable[[], ResultRecord]) -> ResultRecord:
    """The default `TaskRunner`: the task runs in the child itself."""
    return call()


class Executor:
    def __init__(
        self,
        app: Forkq,
        session: ConsumerSession,
        slot: SlotWriter,
        limits: TimeLimits | None = None,
        run_task: TaskRunner = run_here,
        observers: Observers | None = None,
        revoked: RevokedIds | None = None,
    ) -> None:
        self.app = app
        self.observers = observers or Observers()  # told of each outcome (worker/observe.py)
        # The revoked ids, in memory (revoked.py); without a bulletin, read every few seconds.
        self.revoked = RevokedIds(session.results) if revoked is None else revoked
        self.run_task = run_task
        self.limits = limits or TimeLimits()
        self.session = session
        self.results = session.results
        # The acks a child kept back go into its slot for its master to send should it die;
        # where none are kept, or the master releases nothing (recovery by connection), there
        # is nothing to write.
        caps = session.capabilities
        self._unacked = session.kept_acks if caps.keeps_acks and caps.releases_others else _none
        self.slot = slot
        self.ttl = app.settings.result_ttl
        # The run being handled (lease.py): its fence is made only for a write of its record.
        self._running: tuple[Message, Delivery] | None = None
        self.admission = Admission(self.results, self.limits)  # rate and concurrency limits

    def handle(self, delivery: Delivery) -> bool:
        """Run the delivery's task, or reject it: True. False when a rate or concurrency
        limit held it back (admission.py: it waits in the broker), or another worker took it
        over while this one was cut off (lease.py)."""
        if hold_of(self.session, delivery, BEFORE_START) is not Hold.HELD:
            return False
        self.slot.taken(delivery.receipt)
        if not delivery.returned:
            return self._handle(delivery)
        key = returned_key(delivery.body)
        earlier = self.results.count_start(key, RETURNED_STARTS_TTL) - 1
        done = self._handle(
            msgspec.structs.replace(delivery, delivery_count=delivery.delivery_count + earlier)
        )
        # Done with: a copy of the same bytes sent again (a requeued dead letter) counts anew.
        # One held back keeps its starts: when it comes back returned, they still count.
        if done:
            self.results.forget_starts(key)
        return done

    def _handle(self, delivery: Delivery) -> bool:
        self._running = None  # once decoded: it fences this run's writes of its record
        try:
            message, task, (before, stored) = self._accept(delivery)
            self._running = (message, delivery)
            if self.observers:
                self.observers.received(message, delivery.queue)
            if before is Earlier.DONE:
                return self._ack_done(delivery, message, stored)
            if before is Earlier.REVOKED or self.revoked.revoked(message.id):
                return self._discard_revoked(delivery, task, message)
            throttle = task.options.throttle  # None for tasks without limits: nothing more
            if throttle is not None and self._held_back(delivery, throttle, task, message):
                return False
        except _Refused as refused:
            self._reject(delivery, refused.rejected, refused.message)
            self.slot.finished(failed=True, unacked=self._unacked())
            return True
        limits = self.limits.for_task(task)
        self.slot.busy(message.id, message.task, delivery.receipt, delivery.queue, limits.hard)
        if message.unique is not None:
            unlock_at_start(self.results, message)
        observed, began = self.observers, time.monotonic()
        if observed:
            observed.started(message, delivery.queue)
        record = self._run(task, message, delivery, limits.soft)
        # When it ended, before its result and effects are sent: a retry's next try may be
        # received by another child at once, and the events order by these times.
        ended_at, runtime = time.time(), time.monotonic() - began
        if throttle is not None:  # before a retry is published: the next try takes anew
            self.admission.let_go(throttle, task, message)
        hold = hold_of(self.session, delivery, AT_FINISH)
        if hold is Hold.GIVEN_BACK and message.flow is None and record.state != RETRY:
            kept_for_next = [self._result_write(message.id, record)[1]]  # acked, not run, then
            finish_when_room(partial(self.results.store_all, kept_for_next))
        kept = hold is Hold.HELD
        if kept and message.flow is None and record.state != RETRY:
            write = None
            # Failures are stored even for ignore_result tasks: errors must stay visible.
            if record.state == FAILURE or not task.ignores_result:
                record, write = self._result_write(message.id, record)
            finish_when_room(partial(self.session.finish, delivery, write))
        elif kept:
            record = self._finish_with_effects(delivery, task, message, record)
        # After the ack: a crash before it runs the task again, still holding its lock. A
        # retry keeps it (the next try is the same task); a refused one is a failure.
        if kept and message.unique is not None and record.state != RETRY:
            unlock_at_end(self.results, message)
        self.slot.finished(failed=record.state == FAILURE, unacked=self._unacked())
        if observed:
            reason = LOST_LEASE if hold is Hold.TAKEN else _reason(record)  # told as one run
            observed.finished(message, delivery.queue, record.state, runtime, reason, ended_at)
        return True

    def _finish_with_effects(
        self, delivery: Delivery, task: Task, message: Message, record: ResultRecord
    ) -> ResultRecord:
        """A retry (its next try published) or a workflow's step (forkq.canvas.effects): the
        effects go with the result, done by the session before the ack."""
        effects = None
        if record.state == RETRY:
            try:
                next_one = self.app.to_outgoing(next_try(message, record), time.time())
                effects = Effects(publish=(next_one,))
            except ConfigurationError as exc:  # a retry no engine can schedule: a failure
                record = refused_retry(message, exc)
        if message.flow is not None and record.state != RETRY:
            record, effects = effects_of(self.app, message, record)
        write = None
        if record.state == FAILURE or not task.ignores_result or stores_result(message):
            record, write = self._result_write(message.id, record)
        finish_when_room(partial(self.session.finish, delivery, write, effects))
        return record

    def _discard_revoked(self, delivery: Delivery, task: Task, message: Message) -> bool:
        """A revoked task is not run: its REVOKED record stored and its message acked (not
        dead-lettered: nothing is wrong with it); its workflow failed downstream with an
        error that says it was revoked; its unique lock let go, and the concurrency slot a
        process that died running it may hold."""
        log.info("task %s[%s] revoked: discarded, not run", message.task, message.id)
        if task.options.throttle is not None:
            self.admission.let_go(task.options.throttle, task, message)
        effects = None
        if message.flow is not None:
            why = f"task {message.id} was revoked"
            failed = failure_record(TaskRevoked.__name__, why, name=message.task)
            effects = effects_of(self.app, message, failed)[1]
        finish = partial(self.session.finish, delivery, self._revoked_write(message), effects)
        finish_when_room(finish)
        if message.unique is not None:  # after the ack, as for a task that ran
            unlock_at_end(self.results, message)
        self.slot.finished(failed=False, unacked=self._unacked())
        if self.observers:
            self.observers.finished(message, delivery.queue, REVOKED, 0.0, NOT_RUN, time.time())
        return True

    def _ack_done(self, delivery: Delivery, message: Message, state: str) -> bool:
        """A redelivery whose task ran to its end before (redelivered.py): acked without
        running it again, its stored record left as it is, its unique lock let go after the
        ack as after a run."""
        finish_when_room(partial(self.session.finish, delivery, None))
        if message.unique is not None:
            unlock_at_end(self.results, message)
        self.slot.finished(failed=False, unacked=self._unacked())
        if self.observers:
            self.observers.finished(message, delivery.queue, state, 0.0, DONE_BEFORE, time.time())
        return True

    def _revoked_write(self, message: Message) -> ResultWrite:
        """The REVOKED record to store: the one stored already, if any (a master that ended
        the task's process stored "terminated while running", and gave its message back for
        this discard), else "not run". One read per discard: revocations are rare."""
        stored = self.results.get(message.id)
        if stored is not None and stored.state == REVOKED:
            return ResultWrite(message.id, REVOKED, stored.payload, self.ttl, self._fence())
        return self._result_write(message.id, revoked_record(NOT_RUN, message.task))[1]

    def _accept(self, delivery: Delivery) -> tuple[Message, Task, tuple[Earlier, str]]:
        """The message, its task, and what its stored record says of it (redelivered.py:
        read for redeliveries only); or `_Refused`: the rejection, with the message when it was
        decoded (its workflow then fails downstream of it)."""
        if delivery.delivery_count > 1 and delivery.delivery_count > self._most_deliveries() + 1:
            # Over every task's limit, and the last try to reject it died too: decoding it
            # may be what kills the process, so it goes without being read.
            task_id = self.app.codec.trusted_id(delivery.body)  # found without decoding
            raise _Refused(_worker_lost(delivery.delivery_count, self._most_deliveries(), task_id))
        try:
            decoded = self.app.codec.decode(delivery.body)
        except MessageRejected as rejected:
            raise _Refused(rejected) from None
        task: Task | None = None
        message = decoded  # until accepted: then as its task gets it (converted arguments)
        try:
            message, task = accept(self.app, decoded)
            before = earlier(self.results, message, delivery)
            limit = task.options.max_deliveries or self.app.settings.max_deliveries
            if delivery.delivery_count > limit and before[0] is Earlier.RUN:
                raise _worker_lost(delivery.delivery_count, limit, message.id)
        except MessageRejected as rejected:
            if task is not None and task.options.throttle is not None:  # its slot, if it
                self.admission.let_go(task.options.throttle, task, message)  # died holding one
            raise _Refused(rejected, decoded) from None
        return message, task, before

    def _held_back(
        self, delivery: Delivery, throttle: Throttle, task: Task, message: Message
    ) -> bool:
        """Whether the task is over a limit (forkq/worker/admission.py): then its message goes
        back to wait in the broker, not counted as run, and the child moves on."""
        try:
            wait = self.admission.wait(throttle, task, message)
        except MessageRejected as rejected:  # a key function that fails: it can never run
            raise _Refused(rejected, message) from None
        if wait <= 0:
            return False
        self.session.requeue(delivery, wait)
        self.slot.idle()
        return True

    def _most_deliveries(self) -> int:
        """The highest redelivery limit any registered task has."""
        own = (t.options.max_deliveries or 0 for t in self.app.tasks.values())
        return max([self.app.settings.max_deliveries, *own])

    def _reject(
        self, delivery: Delivery, rejected: MessageRejected, message: Message | None
    ) -> None:
        """Its FAILURE stored (when its id can be trusted), the effects of that failure done
        (a workflow's step), then the message dead-lettered: a crash in between repeats the
        rejection and its effects, which are keyed by task id."""
        log.warning("dead-lettering message %s: %s", delivery.receipt, rejected.reason)
        self._running = None  # a verdict, no run's: the dead letter requeued runs afresh
        if message is not None and message.unique is not None:  # it will never run
            unlock_at_end(self.results, message)
        task_id = rejected.failed_task_id
        write = None
        if task_id is not None:
            _, write = self._result_write(
                task_id, failure_record(rejected.exc_type, rejected.reason)
            )
        effects = None if message is None else rejection_effects(self.app, message, rejected)
        apply_effects(self.results, self.app.broker.publish, write, effects)
        self.session.dead_letter(delivery, rejected.reason)
        if self.observers:
            name = "" if message is None else message.task
            verdict = rejected.kind is Rejection.KILLED_FOR_TIME
            self.observers.rejected(
                Rejected(task_id or "", name, delivery.queue, rejected.reason, verdict)
            )

    def _run(
        self, task: Task, message: Message, delivery: Delivery, soft_limit: float | None
    ) -> ResultRecord:
        if self._tracks_started(task) and not task.ignores_result:
            started = ResultRecord(state=STARTED, date_done=time.time(), name=message.task)
            unless_full(partial(self._store, message.id, started), "its STARTED record")
        return self.run_task(
            partial(self._call, task, message, delivery.delivery_count, soft_limit)
        )

    def _call(
        self, task: Task, message: Message, delivery_count: int, soft_limit: float | None
    ) -> ResultRecord:
        """The task itself: in this process, or in one of its own (`run_task`)."""
        within = partial(call_within_soft_limit, seconds=soft_limit)
        return execute(
            task, message, delivery_count, within=within, passthrough=(Stopping, Terminated)
        )

    def _tracks_started(self, task: Task) -> bool:
        own = task.options.track_started
        return self.app.settings.track_started if own is None else own

    def _store(self, task_id: str, record: ResultRecord) -> None:
        self.results.store_all([self._result_write(task_id, record)[1]])

    def _result_write(self, task_id: str, record: ResultRecord) -> tuple[ResultRecord, ResultWrite]:
        """A run's record carries its sending (redelivered.py), as its write its fence."""
        fence = self._fence()
        if fence is not None:
            record = msgspec.structs.replace(record, sending=fence.sending)
        record, payload = encode_storable(record)
        return record, ResultWrite(task_id, record.state, payload, self.ttl, fence)

    def _fence(self) -> Fence | None:
        return None if self._running is None else run_fence(*self._running)


class _Refused(Exception):
    """A delivery that will not run: why, and its message when it was decoded."""

    def __init__(self, rejected: MessageRejected, message: Message | None = None) -> None:
        super().__init__(rejected.reason)
        self.rejected = rejected
        self.message = message


def _worker_lost(deliveries: int, limit: int, task_id: str | None) -> MessageRejected:
    return MessageRejected(
        f"worker lost: the process handling it died {deliveries - 1} time(s), the limit is {limit}",
        task_id,
        kind=Rejection.WORKER_LOST,
    )


def _reason(record: ResultRecord) -> str:
    """What an observer hears of why a task failed or will retry: its exception's line."""
    if record.exc_type is None:
        return ""
    return f"{record.exc_type}: {record.exc_message or ''}"


def _none() -> tuple[()]:
    return ()


def returned_key(body: bytes) -> str:
    """What a returned message's starts are counted under: a digest of its bytes, which
    stay the same however often it comes back."""
    return hashlib.blake2b(body, digest_size=16).hexdigest()
