"""What the master serves on `--metrics-port`: Prometheus metrics and health checks, answered
by its own loop from what it holds (the scoreboard, the tally, its counts) and from /proc.

    GET /metrics ─► the pool's families (below) + the worker layer's (`Exposed.collect`)
                    ─► prometheus_client's text exposition format
    GET /healthz ─► 200: the loop answered, so it is alive
    GET /readyz  ─► 200 when not stopping, a child is up and the worker layer has nothing
                    against it (`Exposed.unready`: the broker unreachable), else 503 and why

The pool's families: `forkq_worker_info{hostname}`, `forkq_worker_start_time_seconds`,
`forkq_concurrency`, `forkq_children{state}`, `forkq_child_exits_total{reason}`, and
`forkq_process_{rss,pss,uss,shared}_bytes{process,slot}` for the master, each child and each
companion. Reading a process's memory walks its page tables (milliseconds for a big one), so a
reading is reused for MEMORY_MAX_AGE seconds: however often /metrics is asked for, /proc is
read at most that often. Everything else is read at each scrape; nothing is sent to or asked
of a child.

The worker layer hands the master what only it knows (tasks, queues, the broker) through
`Exposed`, as it hands it `Supervision`: the pool imports nothing of it.
"""

from __future__ import annotations

import os
import selectors
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from forkq.pool.exits import ChildExit, exit_causes
from forkq.pool.http_endpoint import HttpEndpoint, Response
from forkq.pool.metrics_port import ServedPool
from forkq.pool.process_memory import ProcessMemory, read_process_memory
from forkq.pool.scoreboard import SlotState
from forkq.pool.tally import Tally

MEMORY_MAX_AGE = 5.0  # seconds a reading of the processes' memory is served again
_STATES = [s for s in SlotState if s is not SlotState.EMPTY]
_MEMORY: tuple[tuple[str, str, Callable[[ProcessMemory], int]], ...] = (
    ("rss", "Resident memory (pages shared with others counted again in each)", lambda m: m.rss),
    ("pss", "Proportional memory: each page divided by the processes sharing it", lambda m: m.pss),
    ("uss", "Private memory: what ending the process would free", lambda m: m.uss),
    ("shared", "Memory the process shares with at least one other", lambda m: m.shared),
)


class Exposed(Protocol):
    """What the worker layer adds to what the master serves."""

    def collect(self, occupied: Sequence[int]) -> Iterable[Metric]:
        """Its metric families, read from memory: no broker round trip. `occupied`: the
        slots with a child now (`Tally.totals`)."""
        ...

    def unready(self) -> str | None:
        """Why the worker should not be counted ready (the broker unreachable), or None."""
        ...


class PoolMetrics:
    """Made by the worker layer before the fork (the listener bound, the tally shared); the
    master drives it as its `MetricsPort` (pool/metrics_port.py)."""

    def __init__(self, listener: socket.socket, exposed: Exposed, tally: Tally | None) -> None:
        self.listener = listener
        self.exposed = exposed
        self.tally = tally
        self.exits: Counter[str] = Counter()  # child exits by cause (exits.py)
        self._endpoint: HttpEndpoint | None = None
        self._memory: tuple[float, list[tuple[str, str, ProcessMemory]]] = (-MEMORY_MAX_AGE, [])

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.listener.getsockname()[:2]
        return str(host), int(port)

    def start(self, pool: ServedPool, selector: selectors.BaseSelector) -> None:
        routes = {
            "/metrics": lambda: self.metrics(pool),
            "/healthz": lambda: Response(200, b"ok\n"),
            "/readyz": lambda: self.readiness(pool),
        }
        self._endpoint = HttpEndpoint(self.listener, selector, routes)

    # -- the master's loop ------------------------------------------------------------------

    @property
    def fds(self) -> list[int]:
        return self._endpoint.fds if self._endpoint else [self.listener.fileno()]

    @property
    def deadline(self) -> float | None:
        return self._endpoint.deadline if self._endpoint else None

    def expire(self, now: float) -> None:
        if self._endpoint is not None:
            self._endpoint.expire(now)

    def child_reaped(self, exit: ChildExit, stopping: bool) -> None:
        """Before its slot is forked again: its counts join the master's, its exit is
        counted by cause."""
        if self.tally is not None:
            self.tally.fold(exit.index)
        self.exits[exit.cause(stopping)] += 1

    def close(self) -> None:
        if self._endpoint is not None:
            self._endpoint.close()
        else:
            self.listener.close()

    # -- the answers ------------------------------------------------------------------------

    def metrics(self, pool: ServedPool) -> Response:
        text = generate_latest(_Families(self, pool))
        return Response(200, text, CONTENT_TYPE_LATEST)

    def readiness(self, pool: ServedPool) -> Response:
        why = self.unready(pool)
        if why is None:
            return Response(200, b"ready\n")
        return Response(503, f"not ready: {why}\n".encode())

    def unready(self, pool: ServedPool) -> str | None:
        if pool.stopping:
            return "stopping"
        states = [state for _, state in _child_states(pool)]
        if SlotState.IDLE not in states and SlotState.BUSY not in states:
            return "no child is up"
        return self.exposed.unready()

    def collect(self, pool: ServedPool) -> Iterable[Metric]:
        info = InfoMetricFamily("forkq_worker", "The worker's name (-n)")
        info.add_metric([], {"hostname": pool.hostname})
        yield info
        yield GaugeMetricFamily(
            "forkq_worker_start_time_seconds",
            "When the master started, in seconds since the epoch",
            value=pool.started_at,
        )
        yield GaugeMetricFamily(
            "forkq_concurrency",
            "Children the pool keeps (-c; TTIN and TTOU change it)",
            value=pool.concurrency,
        )
        children = GaugeMetricFamily("forkq_children", "Children by state", labels=["state"])
        counted = Counter(state for _, state in _child_states(pool))
        for state in _STATES:
            children.add_metric([state.name.lower()], counted[state])
        yield children
        exits = CounterMetricFamily(
            "forkq_child_exits", "Children that exited, by cause", labels=["reason"]
        )
        for cause in sorted(set(exit_causes()) | set(self.exits)):
            exits.add_metric([cause], self.exits[cause])
        yield exits
        yield from self._memory_families(pool)

    def _memory_families(self, pool: ServedPool) -> Iterable[Metric]:
        families = [
            (GaugeMetricFamily(f"forkq_process_{name}_bytes", doc, labels=["process", "slot"]), of)
            for name, doc, of in _MEMORY
        ]
        for process, slot, usage in self._memory_reading(pool):
            for family, of in families:
                family.add_metric([process, slot], of(usage))
        yield from (family for family, _ in families)

    def _memory_reading(self, pool: ServedPool) -> list[tuple[str, str, ProcessMemory]]:
        at, rows = self._memory
        now = time.monotonic()
        if now - at < MEMORY_MAX_AGE:
            return rows
        named = [("master", "", os.getpid())]
        named += [("child", str(index), pid) for index, pid in sorted(pool.child_slots())]
        named += [(c.program.label, "", c.pid) for c in pool.companions.all if c.pid]
        read = ((process, slot, read_process_memory(pid)) for process, slot, pid in named)
        rows = [(process, slot, usage) for process, slot, usage in read if usage is not None]
        self._memory = (now, rows)
        return rows


class _Families(Collector):
    """One scrape's families: the pool's, then the worker layer's."""

    def __init__(self, metrics: PoolMetrics, pool: ServedPool) -> None:
        self._metrics, self._pool = metrics, pool

    def collect(self) -> Iterable[Metric]:
        yield from self._metrics.collect(self._pool)
        occupied = [index for index, _ in self._pool.child_slots()]
        yield from self._metrics.exposed.collect(occupied)


def _child_states(pool: ServedPool) -> list[tuple[int, SlotState]]:
    """Each live child's state; one that has not written its slot yet is starting."""
    found = []
    for index, pid in pool.child_slots():
        seen = pool.scoreboard.read(index)
        found.append((index, seen.state if seen.pid == pid else SlotState.STARTING))
    return found
