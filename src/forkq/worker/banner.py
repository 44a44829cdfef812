"""What a worker says when it starts: who it is, where it reads, what it runs, and a loud
warning when it has no tasks (every message would then be dead-lettered as unknown)."""

from __future__ import annotations

import logging
from typing import Protocol

from forkq.app import Forkq
from forkq.engines.registry import carries_control
from forkq.engines.sqlite.file import shown_url
from forkq.pool.http_endpoint import Address
from forkq.worker.limits import TimeLimits

log = logging.getLogger("forkq.worker")

NO_TASKS = (
    "app {main} has no tasks: every message this worker takes will be dead-lettered as "
    "'unknown task'. Register them in the module -A names, or name the modules that define "
    "them: Forkq({main!r}, include=['{main}.tasks']) or app.autodiscover_tasks(['{main}'])"
)


class WorkerFacts(Protocol):
    """What the banner shows of the worker's configuration (service.WorkerConfig)."""

    @property
    def concurrency(self) -> int: ...
    @property
    def queues(self) -> tuple[str, ...]: ...
    @property
    def prefetch(self) -> int | None: ...
    @property
    def limits(self) -> TimeLimits: ...
    @property
    def max_tasks_per_child(self) -> int | None: ...
    @property
    def max_memory_per_child(self) -> int | None: ...
    @property
    def scheduler(self) -> bool: ...
    @property
    def metrics(self) -> Address | None: ...
    @property
    def control(self) -> bool: ...


def log_banner(app: Forkq, facts: WorkerFacts, hostname: str, pid: int) -> None:
    for line in banner_lines(app, facts, hostname, pid):
        log.info("%s", line)
    if not app.tasks:
        log.warning(NO_TASKS.format(main=app.main))
    for warning in app.broker.server_warnings():
        log.warning("%s", warning)


def banner_lines(app: Forkq, facts: WorkerFacts, hostname: str, pid: int) -> list[str]:
    prefetch = "auto (1 to 16)" if facts.prefetch is None else str(facts.prefetch)
    children = "1 child" if facts.concurrency == 1 else f"{facts.concurrency} children"
    lines = [
        f"forkq worker {hostname} (master pid {pid}), app {app.main}",
        f"  broker:      {shown_url(app.settings.broker_url)}",
        f"  results:     {shown_url(app.settings.backend_url)}",
        f"  queues:      {', '.join(facts.queues)}",
        f"  concurrency: {children}, prefetch {prefetch}",
        f"  limits:      {_limits(facts)}",
    ]
    if app.schedules or not facts.scheduler:  # no line for an app without periodic tasks
        lines.append(f"  scheduler:   {_scheduler(app, facts)}")
    if facts.metrics is not None:
        lines.append(f"  metrics:     http://{facts.metrics}/metrics, /healthz, /readyz")
    if carries_control(app.settings.broker_url):  # no line where the sockets are the only way
        lines.append(f"  control:     {_control(facts, hostname)}")
    lines.append(f"  tasks ({len(app.tasks)}):")
    return lines + [f"    . {name}" for name in sorted(app.tasks)]


def _limits(facts: WorkerFacts) -> str:
    memory = facts.max_memory_per_child
    shown = [
        ("time limit", _seconds(facts.limits.hard)),
        ("soft time limit", _seconds(facts.limits.soft)),
        ("tasks per child", facts.max_tasks_per_child),
        ("memory per child", None if memory is None else f"{memory / 2**20:g} MiB USS"),
    ]
    return ", ".join(f"{name} {value}" for name, value in shown if value is not None) or "none"


def _scheduler(app: Forkq, facts: WorkerFacts) -> str:
    count = len(app.schedules)
    if not facts.scheduler:
        return f"off (--no-scheduler), {count} schedule(s) left to others"
    return f"{count} schedule(s), fired by whichever scheduler of app {app.main} leads"


def _control(facts: WorkerFacts, hostname: str) -> str:
    if not facts.control:
        return "this host's control socket only (--no-control)"
    return f"over the broker, answering as {hostname}"


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:g}s"
