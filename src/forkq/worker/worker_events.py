"""Worker events (`forkq worker -E`), in the master: online when the pool starts, a heartbeat
on every supervision tick, offline when it has stopped; and the master's own task events (a
task ended by a revoke's terminate, one killed for its hard time limit).

    service: WorkerEvents(...) ─► attach(pool) ─► online
    tick (WorkerSupervision.tick) ─► heartbeat: each child's scoreboard row and memory
        (/proc smaps), the master's memory ─► one flush (one add_events) with the master's
        task events held since the last tick
    child reaped (terminated, time limit) ─► its task's event, held for the next tick
    pool stopped ─► offline ─► the last flush (what cannot go counted as dropped)

The buffer is task_events.EventBuffer: bounded, a failed flush dropped and counted with a
back-off, so a slow store costs the master's loop one attempt per back-off at most.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from forkq.engines.contract import ResultBackend
from forkq.engines.registry import open_backend
from forkq.events import ChildRow, TaskEvent, TaskEventKind, WorkerEvent, WorkerEventKind
from forkq.pool.process_memory import ProcessMemory, read_process_memory
from forkq.pool.scoreboard import Scoreboard, SlotState, SlotView
from forkq.settings import Settings
from forkq.worker.task_events import REASON_MAX, EventBuffer, no_count


class PoolRows(Protocol):
    """What a heartbeat reads of the pool (the master): its children, their slots, and how
    many times each slot's child was replaced."""

    concurrency: int
    scoreboard: Scoreboard

    @property
    def restarts(self) -> Mapping[int, int]:
        """Children replaced, by slot index."""
        ...

    def child_slots(self) -> Sequence[tuple[int, int]]:
        """(index, pid) of every live child."""
        ...


class WorkerEvents:
    """The master's events; `queues()` says the queues consumed now."""

    def __init__(
        self,
        buffer: EventBuffer,
        worker: str,
        host: str,
        queues: Callable[[], tuple[str, ...]],
    ) -> None:
        self.buffer, self.worker, self.host, self._queues = buffer, worker, host, queues
        self._pool: PoolRows | None = None

    def attach(self, pool: PoolRows) -> None:
        """The pool is about to start: online, sent now."""
        self._pool = pool
        self.buffer.add(self._event(WorkerEventKind.ONLINE))
        self.buffer.flush()

    def heartbeat(self) -> None:
        """On the tick: the pool's rows and memory, with what the master held, in one flush."""
        if self._pool is None:
            return
        rows = sorted(self._row(index, pid) for index, pid in self._pool.child_slots())
        memory = read_process_memory(os.getpid())
        self.buffer.add(self._event(WorkerEventKind.HEARTBEAT, tuple(rows), memory))
        self.buffer.flush()

    def stopped(self) -> None:
        """The pool has stopped: offline, sent now with whatever was held."""
        self.buffer.add(self._event(WorkerEventKind.OFFLINE))
        self.buffer.close()  # sent, or counted as dropped

    def task_ended(self, kind: TaskEventKind, seen: SlotView, child: int, reason: str) -> None:
        """A task the master ended (revoked and terminated, or killed for its time limit),
        held for the next tick; a failed one with how long it ran."""
        runtime = max(0.0, time.time() - seen.started_at) if kind is TaskEventKind.FAILED else None
        self.buffer.add(
            TaskEvent(
                kind,
                seen.task_id,
                seen.task_name,
                seen.queue,
                time.time(),
                self.worker,
                child,
                runtime,
                reason[:REASON_MAX],
            )
        )

    def _row(self, index: int, pid: int) -> tuple[int, ChildRow]:
        assert self._pool is not None
        seen = self._pool.scoreboard.read(index)
        memory = read_process_memory(pid)
        return index, ChildRow(
            index,
            pid,
            seen.state.name.lower(),
            seen.task_id,
            seen.task_name,
            seen.done,
            rss=memory.rss if memory else 0,
            pss=memory.pss if memory else 0,
            uss=memory.uss if memory else 0,
            shared=memory.shared if memory else 0,
            started_at=seen.started_at if seen.state is SlotState.BUSY else 0.0,
            restarts=self._pool.restarts.get(index, 0),
        )

    def _event(
        self,
        kind: WorkerEventKind,
        rows: Sequence[tuple[int, ChildRow]] = (),
        memory: ProcessMemory | None = None,
    ) -> WorkerEvent:
        return WorkerEvent(
            kind,
            self.worker,
            self.host,
            os.getpid(),
            time.time(),
            self._queues(),
            self._pool.concurrency if self._pool is not None else 0,
            tuple(row for _, row in rows),
            memory.rss if memory else 0,
            memory.pss if memory else 0,
            memory.uss if memory else 0,
        )


def master_events(
    settings: Settings,
    backend: Callable[[], ResultBackend],
    worker: str,
    host: str,
    queues: Callable[[], tuple[str, ...]],
    dropped: Callable[[int], None] | None = None,
) -> WorkerEvents:
    """The master's events, kept on its own result backend's connection (`backend()`), or on
    a connection of its own to `events_url`."""
    if settings.events_url is None:
        buffer = EventBuffer(backend(), settings.events_kept, dropped or no_count)
    else:
        own = open_backend(settings.events_url)
        buffer = EventBuffer(own, settings.events_kept, dropped or no_count, release=own.close)
    return WorkerEvents(buffer, worker, host, queues)
