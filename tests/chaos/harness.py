"""The chaos suite's measuring: a task that records each execution's start and end in a
per-run file (O_APPEND, one write per line: exact under concurrent children and kills), and
the one line of figures each scenario prints and keeps for the README's "Failure model".

A scenario sends `Run.tasks` through a real `forkq worker`, faults it (each fault noted with
`Run.fault`), waits for the drain and calls `Run.figures`, which counts:
- completed: ids with an end line; executions: start lines; duplicates = executions - unique
  ids started (a task killed mid-run and run again counts twice);
- dead-lettered: the broker's dead letters of the queue (failed as WorkerLost after
  `max_deliveries` deaths), accounted, not lost;
- lost = sent - completed - dead-lettered;
- recovery: from each fault to the end of its probe, a task sent at the highest priority right
  after the fault (again and again while the broker refuses it): new work runs again; the
  worst of the faults;
- redelivered: from each fault to the end of the last task delivered again (delivery count
  above 1) that started after it and before the next fault: what the fault put back (a
  dead worker's tasks, taken over after its lease) has run; 0 when nothing came back.

The in-flight bound: what a fault can make run again is what the processes it hit held, a
child's prefetched batch (the task running among them); a whole worker or the broker, every
child's. `bound()` sums that over the faults from the settings the scenario used.
"""

from __future__ import annotations

import os
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from forkq import Forkq
from forkq.envelope import make_message
from forkq.exceptions import BrokerUnavailable
from forkq.result import AsyncResult
from forkq.worker.prefetch import MOST

TASK = "e2eapp.chaos_recorded"

# Appended to tests/conftest.py's E2E_APP: the chaos app is the e2e app (its ping, which
# wait_until_serving sends) and this task.
CHAOS_TASKS = textwrap.dedent(
    """

    def _chaos_line(path, word, task_id, delivery):
        line = f"{word} {task_id} {os.getpid()} {time.monotonic():.6f} {delivery}\\n".encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    @app.task(bind=True)
    def chaos_recorded(self, path, seconds):
        delivery = self.request.delivery_count
        _chaos_line(path, "S", self.request.id, delivery)
        time.sleep(seconds)
        _chaos_line(path, "E", self.request.id, delivery)
        return self.request.id
    """
)

FIGURES_ENV = "FORKQ_CHAOS_FIGURES"  # where the lines go; default .chaos/figures.txt


def figures_path() -> Path:
    default = Path(__file__).resolve().parents[2] / ".chaos" / "figures.txt"
    return Path(os.environ.get(FIGURES_ENV, str(default)))


PRINTED: list[str] = []  # this session's lines, repeated in the terminal summary


@dataclass(frozen=True)
class Line:
    word: str  # S: started, E: ended
    task_id: str
    pid: int
    at: float  # time.monotonic(), one clock for every process on the host
    delivery: int  # the message's delivery count: 2 and up, delivered again


@dataclass(frozen=True)
class Fault:
    at: float  # time.monotonic()
    in_flight: int  # the tasks it can make run again


@dataclass
class Run:
    """One scenario's tasks and faults. `per_fault` is what each fault can put back in flight
    (`held_by_child` or `held_by_worker`)."""

    name: str
    engine: str
    directory: Path
    seconds: float = 0.005  # each task's run: long enough that a kill finds tasks running
    record: Path = field(init=False)
    sent: list[str] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    probes: dict[int, str] = field(default_factory=dict)  # a fault's index: its probe's id

    def __post_init__(self) -> None:
        self.record = self.directory / f"chaos-{self.name}.record"

    def tasks(self, client: Forkq, count: int) -> list[AsyncResult[object]]:
        queue = client.settings.default_queue
        args = [str(self.record), self.seconds]
        results = client.publish_many(
            [make_message(TASK, args, {}, queue=queue) for _ in range(count)]
        )
        self.sent.extend(r.id for r in results)
        return results

    def fault(self, in_flight: int) -> float:
        """Notes a fault that comes now and can put back `in_flight` tasks; returns its time."""
        now = time.monotonic()
        self.faults.append(Fault(now, in_flight))
        return now

    def probe(self, client: Forkq, timeout: float = 30.0) -> AsyncResult[object]:
        """Sends the last fault's probe: one task at the highest priority (ahead of the
        backlog), sent again while the broker is unreachable (an outage sends no signal of its
        end; nothing of a refused publish was written)."""
        message = make_message(
            TASK,
            [str(self.record), self.seconds],
            {},
            queue=client.settings.default_queue,
            priority=9,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = client.publish_many([message])[0]
                break
            except BrokerUnavailable:
                assert time.monotonic() < deadline, f"no publish within {timeout}s of the fault"
                time.sleep(0.05)
        self.sent.append(result.id)
        self.probes[len(self.faults) - 1] = result.id
        return result

    def lines(self) -> list[Line]:
        if not self.record.exists():
            return []
        out = []
        for raw in self.record.read_text().splitlines():
            word, task_id, pid, at, delivery = raw.split()
            out.append(Line(word, task_id, int(pid), float(at), int(delivery)))
        return out

    def bound(self) -> int:
        return sum(fault.in_flight for fault in self.faults)

    def figures(self, dead_lettered: int, note: str = "") -> Figures:
        lines = self.lines()
        sent = set(self.sent)
        starts = [line for line in lines if line.word == "S" and line.task_id in sent]
        ends = [line for line in lines if line.word == "E" and line.task_id in sent]
        completed = {line.task_id for line in ends}
        began = {(line.task_id, line.pid, line.delivery): line.at for line in starts}
        first_end = {end.task_id: end.at for end in reversed(ends)}
        recovery = redelivered = 0.0
        bounds = [f.at for f in self.faults[1:]] + [float("inf")]
        for index, (fault, until) in enumerate(zip(self.faults, bounds, strict=True)):
            probe = self.probes.get(index)
            done = first_end.get(probe, float("inf")) if probe is not None else 0.0
            recovery = max(recovery, done - fault.at)
            again = [
                end.at
                for end in ends
                if end.delivery > 1
                and fault.at < began.get((end.task_id, end.pid, end.delivery), 0.0) < until
            ]
            redelivered = max(redelivered, max(again) - fault.at if again else 0.0)
        return Figures(
            scenario=self.name,
            engine=self.engine,
            sent=len(sent),
            completed=len(completed),
            lost=len(sent) - len(completed) - dead_lettered,
            duplicates=len(starts) - len({line.task_id for line in starts}),
            dead_lettered=dead_lettered,
            faults=len(self.faults),
            bound=self.bound(),
            recovery=recovery,
            redelivered=redelivered,
            note=note,
            lost_ids=sent - completed,
            started={line.task_id for line in starts},
        )


@dataclass(frozen=True)
class Figures:
    scenario: str
    engine: str
    sent: int
    completed: int
    lost: int
    duplicates: int
    dead_lettered: int
    faults: int
    bound: int
    recovery: float
    redelivered: float
    note: str
    lost_ids: set[str]
    started: set[str]

    def line(self) -> str:
        text = (
            f"chaos {self.scenario} engine={self.engine} sent={self.sent} "
            f"completed={self.completed} lost={self.lost} duplicates={self.duplicates} "
            f"(bound {self.bound}, {self.faults} faults) dead-lettered={self.dead_lettered} "
            f"recovery={self.recovery:.2f}s redelivered-done={self.redelivered:.2f}s"
        )
        return f"{text} [{self.note}]" if self.note else text

    def report(self) -> None:
        """Printed (shown with -s, and again in the terminal summary) and written to the
        figures file, which holds this session's lines only (the first line empties it)."""
        text = self.line()
        print(f"\n{text}")
        path = figures_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a" if PRINTED else "w") as out:
            out.write(text + "\n")
        PRINTED.append(text)

    def check(self) -> None:
        """No loss; duplicates within the in-flight bound."""
        assert self.lost == 0, f"{self.line()}: lost {sorted(self.lost_ids)[:10]}"
        assert self.duplicates <= self.bound, self.line()


def held_by_child(prefetch: int | None) -> int:
    """What one child can hold: its batch (`--prefetch N`, or auto's largest)."""
    return prefetch if prefetch is not None else MOST


def held_by_worker(concurrency: int, prefetch: int | None) -> int:
    return concurrency * held_by_child(prefetch)
