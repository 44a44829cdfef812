"""The child's half of a worker: one consumer session, and the loop that feeds it to the
executor until the child is told to stop.

    boot: own connections ─► ConsumerSession (Consumer.of_child) ─► the revoked ids
          (revoked.py: the master's, inherited, and what changed since) ─► after-fork hooks
          ─► the executor's observers (worker/observe.py): with metrics, this slot's counter;
          with events (-E), its task events (task_events.py)
    loop: the revoked ids never read? read them, else back off (nothing fetched yet)
          ─► the queues (the bulletin's, when the master posted others) ─► fetch a batch
          (prefetch.py) ─► executor.handle each, the events flushed when due ─► ...
          (until stopped/budget); with events held, the fetch first waits for nothing,
          and only if that finds none are they flushed before the fetch that waits
    leave: the events held flushed ─► release what it still holds (prefetched: back
           uncounted) ─► close the connections

A task's process that dies (`--max-tasks-per-child 1`, task_process.py) ends the child here,
in one place: its message goes back counted when the task is to blame (it ran and died), and
uncounted when it never ran (a hook or the fork failed). A broker or backend error mid-task
ends the child without releasing: its master releases what it held (or, where the engine
recovers by connection, the server does), and the task runs again. A task the master
terminates (a revoke with terminate: SIGTERM, and the bulletin names the task) ends the child
at once, through `Terminated` (pool/child.py); its master settles the message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import msgspec

from forkq import aio
from forkq.app import Forkq
from forkq.engines.contract import Consumer, ConsumerSession, Delivery
from forkq.exceptions import BackendError, BrokerError, Unavailable
from forkq.outage import Outage
from forkq.pool.bulletin import BulletinReader
from forkq.pool.child import EXIT_BOOT_FAILED, EXIT_CRASHED, EXIT_OK, Stopping, StopSignal
from forkq.pool.scoreboard import SlotWriter
from forkq.worker.executor import Executor
from forkq.worker.limits import TimeLimits
from forkq.worker.observe import Observers, TaskObserver
from forkq.worker.prefetch import PrefetchSizer
from forkq.worker.revoked import RevokedIds
from forkq.worker.task_events import EventBuffer, TaskEvents, child_buffer, no_count
from forkq.worker.task_process import TaskProcessDied, run_in_own_process

if TYPE_CHECKING:  # imported only with --metrics-port (service.py)
    from forkq.worker.metrics import WorkerMetrics

log = logging.getLogger("forkq.worker")

# An idle child re-enters fetch this often; SIGTERM interrupts the wait at once anyway.
FETCH_WAIT = 5.0


class ConsumeOptions(msgspec.Struct, frozen=True):
    worker_id: str
    queues: tuple[str, ...]
    prefetch: int | None  # None: sized to the tasks (prefetch.py)
    limits: TimeLimits = msgspec.field(default_factory=TimeLimits)
    max_tasks: int | None = None  # recycle the child after about this many tasks

    @property
    def fork_per_task(self) -> bool:
        """One task per process: rather than being replaced after every task, the child
        forks a process for each (task_process.py)."""
        return self.max_tasks == 1


def task_budget(max_tasks: int | None) -> int | None:
    """This child's share of max_tasks, plus up to 10% jitter so that children started
    together do not all recycle together."""
    if max_tasks is None:
        return None
    return max_tasks + random.randint(0, max_tasks // 10)


class ConsumeProgram:
    """Runs in each child: fetch a batch, execute each message, until told to stop."""

    def __init__(
        self,
        app: Forkq,
        options: ConsumeOptions,
        bulletin: BulletinReader | None = None,
        metrics: WorkerMetrics | None = None,
        revoked: RevokedIds | None = None,
    ) -> None:
        self.app = app
        self.options = options
        self.bulletin = bulletin  # what the master posts for every child (pool/bulletin.py)
        self.metrics = metrics  # made before the fork: each child counts in its own area
        self.revoked = revoked  # the master's revoked ids, which each child inherits
        self.events: EventBuffer | None = None  # a child's, with -E (made in the child)

    def run_child(self, index: int, slot: SlotWriter, stop: StopSignal) -> int:
        bulletin = self.bulletin
        if bulletin is not None:  # SIGTERM ends the running task if the master terminates it
            stop.terminating = lambda: bulletin.terminating(slot.task_id)
        try:
            return self._serve(index, slot, stop)
        finally:
            aio.close_process_loop()  # the loop async tasks and hooks ran on, if any

    def _serve(self, index: int, slot: SlotWriter, stop: StopSignal) -> int:
        consumer = Consumer.of_child(self.options.worker_id, index, os.getpid())
        try:
            session, executor = self._boot(consumer, slot, index)
        except Exception:
            log.exception("child %d failed to boot", index)
            return EXIT_BOOT_FAILED
        slot.idle()
        log.info("child %d ready (pid %d)", index, os.getpid())
        try:
            with contextlib.suppress(Stopping):
                self._consume(session, executor, slot, stop)
        except TaskProcessDied as died:
            log.warning("child %d leaving: %s", index, died)
            return self._leave_after(died, session, slot)
        except (BrokerError, BackendError) as exc:
            # Mid-task: the result or the ack may be lost. Leave, so that the master releases
            # what this child held and the task runs again (at least once, never lost).
            lost = "lost its connection" if isinstance(exc, Unavailable) else "failed"
            log.warning("child %d %s mid-task (%s); leaving", index, lost, exc)
            return EXIT_CRASHED
        slot.exiting()
        if self.events is not None:
            self.events.flush()
        # Prefetched messages not started yet go back now rather than at lease expiry.
        with contextlib.suppress(BrokerError):
            session.release()
        self.app.close()
        return EXIT_OK

    def _leave_after(
        self, died: TaskProcessDied, session: ConsumerSession, slot: SlotWriter
    ) -> int:
        """Everything this child holds goes back: the task's message counted as run if the
        task is to blame, uncounted if it never ran; the prefetched ones uncounted."""
        running = [slot.receipt] if died.charged and slot.receipt else []
        if not died.charged:
            slot.idle()  # should the release fail, the master's counts no start either
        with contextlib.suppress(BrokerError):
            session.release(running)
        with contextlib.suppress(BrokerError, BackendError):
            self.app.close()  # even when the release failed: the kept acks still go
        return died.exit_code

    def _boot(
        self, consumer: Consumer, slot: SlotWriter, index: int
    ) -> tuple[ConsumerSession, Executor]:
        self.app.drop_inherited_connections()
        # This child's own connections, and its one session on them.
        session = self.app.broker.consumer(consumer, self.app.backend)
        if self.revoked is None:
            revoked = RevokedIds(session.results, self.bulletin)
        else:  # the master's, as it was at the fork: only what changed since is read
            revoked = self.revoked.inherited(session.results)
        revoked.refresh()  # a failure is logged; the loop fetches nothing until a read works
        limits = self.options.limits
        observers = Observers(self._observers(index, session))
        if self.options.fork_per_task:  # the hooks run where the tasks run
            # The task's process never uses the child's connections: `app.broker` and
            # `app.backend` see the new pid and open their own if the task publishes.
            runner = partial(run_in_own_process, self._run_after_fork_hooks)
            return session, Executor(
                self.app, session, slot, limits, runner, observers, revoked=revoked
            )
        self._run_after_fork_hooks()
        return session, Executor(
            self.app, session, slot, limits, observers=observers, revoked=revoked
        )

    def _observers(self, index: int, session: ConsumerSession) -> list[TaskObserver]:
        """Who hears of each outcome in this child (worker/observe.py)."""
        observers: list[TaskObserver] = []
        dropped: Callable[[int], None] = no_count
        if self.metrics is not None:
            counter = self.metrics.observer(index)
            observers.append(counter)
            dropped = counter.events_dropped
        if self.app.settings.events:
            self.events = child_buffer(self.app.settings, session.results, dropped)
            observers.append(TaskEvents(self.events, self.options.worker_id, index))
        return observers

    def _run_after_fork_hooks(self) -> None:
        for hook in self.app.after_fork_hooks:
            aio.run_hook(hook)  # an async one on the loop this process's tasks run on

    def _consume(
        self, session: ConsumerSession, executor: Executor, slot: SlotWriter, stop: StopSignal
    ) -> None:
        queues = ConsumedQueues(self.options.queues, self.bulletin)
        prefetch = PrefetchSizer(self.options.prefetch)
        budget = None if self.options.fork_per_task else task_budget(self.options.max_tasks)
        outage = Outage("broker", log)
        events = self.events
        while not stop.requested and budget != 0:
            pause = executor.revoked.first_read()  # never read: fetch nothing yet
            if pause:
                with stop.interruptible():
                    time.sleep(pause)
                continue
            # Never prefetch more than the child will run before it is recycled.
            limit = prefetch.size() if budget is None else min(prefetch.size(), budget)
            slot.waiting()
            try:
                if queues.changed():  # what it was pushed of a queue no longer consumed goes back
                    session.release()
                batch = self._fetch(session, queues.now, limit, stop)
            except BrokerError as exc:
                pause = outage.failed(exc)
                with stop.interruptible():
                    time.sleep(pause)  # back-off between reconnection attempts
                continue
            outage.succeeded()
            started, ran = time.monotonic(), 0
            for i, delivery in enumerate(batch):
                if stop.requested:
                    return
                slot.reserved = len(batch) - i - 1  # shown by `forkq inspect reserved`
                if budget == 1:  # the last task of this child: take no more work
                    session.stop_fetching()
                ran += executor.handle(delivery)  # False: held back by a limit, not run
                if events is not None:
                    events.flush_if_due()
                if budget is not None:  # a hold-back counts: the child has stopped fetching
                    budget -= 1
            if ran or not batch:  # hold-backs alone say nothing of how long tasks take
                prefetch.ran(ran, time.monotonic() - started)

    def _fetch(
        self, session: ConsumerSession, queues: tuple[str, ...], limit: int, stop: StopSignal
    ) -> list[Delivery]:
        """A batch, waiting up to FETCH_WAIT for one; an idle child holds no events while it
        waits: with some held, a fetch that does not wait comes first, and the events are
        flushed only when it finds nothing (a busy child flushes in batches)."""
        events = self.events
        if events is not None and events.bodies:
            with stop.interruptible():
                batch = session.fetch(queues, limit, 0)
            if batch:
                return batch
            events.flush()  # not interruptible: a stop waits for its one round trip
        with stop.interruptible():
            return session.fetch(queues, limit, FETCH_WAIT)


class ConsumedQueues:
    """The queues a child fetches from: the worker's, until the master posts another set on
    the bulletin (`forkq control add-queue`, `cancel-queue`); read again only when the set's
    version changed, which costs one load per fetch."""

    def __init__(self, queues: tuple[str, ...], bulletin: BulletinReader | None) -> None:
        self.now, self._bulletin, self._version = queues, bulletin, 0
        if bulletin is not None:  # a child forked after a change starts with the new set
            posted = bulletin.read()
            self.now, self._version = posted.queues or queues, posted.queues_version

    def changed(self) -> bool:
        """Whether the set lost a queue since the last look (`now` is the new set)."""
        if self._bulletin is None or self._bulletin.queues_version() == self._version:
            return False
        posted = self._bulletin.read()
        dropped = set(self.now) - set(posted.queues)
        if posted.queues:
            log.debug("queues now %s", ",".join(posted.queues))
            self.now = posted.queues
        self._version = posted.queues_version
        return bool(dropped)
