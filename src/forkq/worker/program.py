"""The two halves of a worker around the pool: the child's consume loop and the master's
supervision (release what a dead child held; heartbeat so other workers leave our holds be)."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from collections.abc import Sequence
from functools import partial

import msgspec

from forkq import aio
from forkq.app import Forkq
from forkq.engines.contract import Consumer, Delivery
from forkq.exceptions import BackendError, BrokerError, TimeLimitExceeded, Unavailable
from forkq.outage import Outage
from forkq.pool.child import EXIT_BOOT_FAILED, EXIT_CRASHED, EXIT_OK, Stopping, StopSignal
from forkq.pool.exits import ChildExit
from forkq.pool.scoreboard import SlotState, SlotView, SlotWriter
from forkq.pool.watch import TIME_LIMIT
from forkq.result import encode_record, failure_record
from forkq.worker.executor import Executor
from forkq.worker.limits import TimeLimits
from forkq.worker.prefetch import PrefetchSizer
from forkq.worker.task_process import TaskProcessDied, run_in_own_process

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


def consumer_name(worker_id: str, index: int, pid: int) -> str:
    return f"{worker_id}/{index}/{pid}"


class ConsumeProgram:
    """Runs in each child: fetch a batch, execute each message, until told to stop."""

    def __init__(self, app: Forkq, options: ConsumeOptions) -> None:
        self.app = app
        self.options = options

    def run_child(self, index: int, slot: SlotWriter, stop: StopSignal) -> int:
        try:
            return self._serve(index, slot, stop)
        finally:
            aio.close_process_loop()  # the loop async tasks and hooks ran on, if any

    def _serve(self, index: int, slot: SlotWriter, stop: StopSignal) -> int:
        consumer = Consumer(
            self.options.worker_id, consumer_name(self.options.worker_id, index, os.getpid())
        )
        try:
            executor = self._boot(consumer, slot)
        except Exception:
            log.exception("child %d failed to boot", index)
            return EXIT_BOOT_FAILED
        slot.idle()
        log.info("child %d ready (pid %d)", index, os.getpid())
        try:
            with contextlib.suppress(Stopping):
                self._consume(executor, stop)
        except TaskProcessDied as died:
            # Charged: its message goes back counted, the prefetched ones uncounted (and the
            # kept acks go). Not charged (a hook, a fork): the executor gave it back already.
            log.warning("child %d leaving: %s", index, died)
            running = [slot.receipt] if died.charged and slot.receipt else []
            with contextlib.suppress(BrokerError):
                executor.broker.release(consumer.name, running)
            with contextlib.suppress(BrokerError, BackendError):
                self.app.close()  # even when the release failed: the kept acks still go
            return died.exit_code
        except (BrokerError, BackendError) as exc:
            # Mid-task: the result or the ack may be lost. Leave, so that the master releases
            # what this child held and the task runs again (at least once, never lost).
            lost = "lost its connection" if isinstance(exc, Unavailable) else "failed"
            log.warning("child %d %s mid-task (%s); leaving", index, lost, exc)
            return EXIT_CRASHED
        slot.exiting()
        # Prefetched messages not started yet go back now rather than at lease expiry.
        with contextlib.suppress(BrokerError):
            executor.broker.release(consumer.name)
        self.app.close()
        return EXIT_OK

    def _boot(self, consumer: Consumer, slot: SlotWriter) -> Executor:
        self.app.drop_inherited_connections()
        broker, backend = self.app.broker, self.app.backend  # this child's own connections
        limits = self.options.limits
        if self.options.fork_per_task:  # the hooks run where the tasks run
            # The task's process never uses the child's connections: `app.broker` and
            # `app.backend` see the new pid and open their own if the task publishes.
            runner = partial(run_in_own_process, self._run_after_fork_hooks)
            return Executor(self.app, broker, backend, consumer, slot, limits, runner)
        self._run_after_fork_hooks()
        return Executor(self.app, broker, backend, consumer, slot, limits)

    def _run_after_fork_hooks(self) -> None:
        for hook in self.app.after_fork_hooks:
            aio.run_hook(hook)  # an async one on the loop this process's tasks run on

    def _consume(self, executor: Executor, stop: StopSignal) -> None:
        queues, prefetch = self.options.queues, PrefetchSizer(self.options.prefetch)
        budget = None if self.options.fork_per_task else task_budget(self.options.max_tasks)
        outage = Outage("broker", log)
        while not stop.requested and budget != 0:
            # Never prefetch more than the child will run before it is recycled.
            limit = prefetch.size() if budget is None else min(prefetch.size(), budget)
            executor.slot.waiting()
            try:
                with stop.interruptible():
                    batch = executor.broker.fetch(executor.consumer, queues, limit, FETCH_WAIT)
            except BrokerError as exc:
                pause = outage.failed(exc)
                with stop.interruptible():
                    time.sleep(pause)  # back-off between reconnection attempts
                continue
            outage.succeeded()
            started = time.monotonic()
            for delivery in batch:
                if stop.requested:
                    return
                if budget == 1:  # the last task of this child: take no more work
                    executor.broker.stop_fetching(executor.consumer)
                executor.handle(delivery)
                if budget is not None:
                    budget -= 1
            prefetch.ran(len(batch), time.monotonic() - started)


class WorkerSupervision:
    """Runs in the master, on its own broker connection."""

    def __init__(self, app: Forkq, worker_id: str, queues: Sequence[str] = ()) -> None:
        self.app = app
        self.worker_id = worker_id
        self.queues = tuple(queues)  # said with every heartbeat: `Broker.consumers_seen`
        self.outage = Outage("broker (from the master)", log)
        self.unreleased: list[ChildExit] = []  # exits whose release failed: retried each tick

    def child_exited(self, exit: ChildExit) -> None:
        try:
            self._release(exit)
        except (BrokerError, BackendError) as exc:
            self.outage.failed(exc)
            self.unreleased.append(exit)
        else:
            self.outage.succeeded()

    def _release(self, exit: ChildExit) -> None:
        seen = exit.last_seen
        running = [seen.receipt] if seen.state == SlotState.BUSY and seen.receipt else []
        name = consumer_name(self.worker_id, exit.index, exit.pid)
        if exit.reason == TIME_LIMIT and running:
            self._fail_timed_out(Consumer(self.worker_id, name), seen)
            running = []
        released = self.app.broker.release(name, running, seen.unacked)
        if released:
            log.warning(
                "released %d message(s) held by child %d (pid %d)%s",
                released,
                exit.index,
                exit.pid,
                _what_ran(seen) if running else "",
            )

    def _fail_timed_out(self, consumer: Consumer, seen: SlotView) -> None:
        """The task, not the process, was at fault: fail it rather than run it again."""
        reason = f"hard time limit exceeded: the process running {seen.task_name} was killed"
        record = failure_record(TimeLimitExceeded.__name__, reason)
        self.app.backend.store(
            seen.task_id, record.state, encode_record(record), self.app.settings.result_ttl
        )
        self.app.broker.dead_letter(consumer, Delivery(seen.receipt, seen.queue, b"", 0), reason)

    def tick(self) -> None:
        """Heartbeat, and retry releases that failed during an outage."""
        try:
            self.app.broker.heartbeat(self.worker_id, self.queues)
            while self.unreleased:
                self._release(self.unreleased[0])
                self.unreleased.pop(0)
        except (BrokerError, BackendError) as exc:
            self.outage.failed(exc)
        else:
            self.outage.succeeded()


def _what_ran(seen: SlotView) -> str:
    if seen.task_id:
        return f"; {seen.task_name}[{seen.task_id}] was running"
    return f"; it was reading message {seen.receipt}"
