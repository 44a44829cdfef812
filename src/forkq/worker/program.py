"""The two halves of a worker around the pool: the child's consume loop and the master's
supervision (release what a dead child held; heartbeat so other workers leave our holds be)."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

from forkq.app import Forkq
from forkq.brokers import Consumer
from forkq.pool.child import EXIT_BOOT_FAILED, EXIT_OK, Stopping, StopSignal
from forkq.pool.master import ChildExit
from forkq.pool.scoreboard import SlotState, SlotWriter
from forkq.worker.executor import Executor

log = logging.getLogger("forkq.worker")

# An idle child re-enters fetch this often; SIGTERM interrupts the wait at once anyway.
FETCH_WAIT = 5.0


@dataclass(frozen=True)
class ConsumeOptions:
    worker_id: str
    queues: tuple[str, ...]
    prefetch: int


def consumer_name(worker_id: str, index: int, pid: int) -> str:
    return f"{worker_id}/{index}/{pid}"


class ConsumeProgram:
    """Runs in each child: fetch a batch, execute each message, until told to stop."""

    def __init__(self, app: Forkq, options: ConsumeOptions) -> None:
        self.app = app
        self.options = options

    def run_child(self, index: int, slot: SlotWriter, stop: StopSignal) -> int:
        consumer = Consumer(
            self.options.worker_id, consumer_name(self.options.worker_id, index, os.getpid())
        )
        try:
            executor = self._boot(consumer, slot)
        except Exception:
            log.exception("child %d failed to boot", index)
            return EXIT_BOOT_FAILED
        slot.idle()
        with contextlib.suppress(Stopping):
            self._consume(executor, stop)
        slot.exiting()
        # Prefetched messages not started yet go back now rather than at lease expiry.
        executor.broker.release(consumer.name)
        self.app.close()
        return EXIT_OK

    def _boot(self, consumer: Consumer, slot: SlotWriter) -> Executor:
        self.app.drop_inherited_connections()
        broker, backend = self.app.broker, self.app.backend  # this child's own connections
        for hook in self.app.after_fork_hooks:
            hook()
        return Executor(self.app, broker, backend, consumer, slot)

    def _consume(self, executor: Executor, stop: StopSignal) -> None:
        queues, prefetch = self.options.queues, self.options.prefetch
        while not stop.requested:
            with stop.interruptible():
                batch = executor.broker.fetch(executor.consumer, queues, prefetch, FETCH_WAIT)
            for delivery in batch:
                if stop.requested:
                    return
                executor.handle(delivery)


class WorkerSupervision:
    """Runs in the master, on its own broker connection."""

    def __init__(self, app: Forkq, worker_id: str) -> None:
        self.app = app
        self.worker_id = worker_id

    def child_exited(self, exit: ChildExit) -> None:
        seen = exit.last_seen
        running = [seen.receipt] if seen.state == SlotState.BUSY and seen.receipt else []
        name = consumer_name(self.worker_id, exit.index, exit.pid)
        released = self.app.broker.release(name, running)
        if released:
            log.warning(
                "released %d message(s) held by child %d (pid %d)%s",
                released,
                exit.index,
                exit.pid,
                f"; {seen.task_name}[{seen.task_id}] was running" if running else "",
            )

    def tick(self) -> None:
        self.app.broker.heartbeat(self.worker_id)
