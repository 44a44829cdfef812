"""`forkq worker`: load, preload, freeze, fork, supervise.

master: gc.disable() ─► import app ─► before-fork hooks ─► open broker (fail fast)
        ─► tasks' argument conversions worked out ─► --metrics-port bound (fail fast), the
        tally made (shared) ─► gc.freeze() ─► gc.enable()
        ─► Master.run(): fork N children, supervise until stopped
child:  drop inherited connections ─► open own ─► after-fork hooks ─► consume loop

The pidfile is claimed (locked) after the app is imported (the command line imports it to
build the config) but before the before-fork hooks run and the broker is reached, so that a
second worker given it stops before doing either (pool/pidfile.py). HUP's check of the new
code (pool/reload.py) runs this same command with CHECK_ENV set: it goes as far as the broker
check, then exits 0 without forking.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from importlib import metadata
from typing import TYPE_CHECKING, NoReturn

import msgspec

from forkq import exitcodes, logs
from forkq.app import Forkq
from forkq.arguments import prepare_conversions
from forkq.engines.contract import schedule_store
from forkq.engines.registry import carries_control
from forkq.exceptions import ConfigurationError
from forkq.pool.bulletin import Bulletin
from forkq.pool.companion import CompanionProgram
from forkq.pool.config import PoolConfig
from forkq.pool.control_dir import open_worker_dir
from forkq.pool.http_endpoint import Address, listen
from forkq.pool.master import Master
from forkq.pool.pidfile import PidFile
from forkq.pool.reload import CHECK_ENV
from forkq.pool.scoreboard import slot_capacity
from forkq.worker.agent import AgentProgram
from forkq.worker.banner import log_banner
from forkq.worker.consume import ConsumeOptions, ConsumeProgram
from forkq.worker.limits import TimeLimits
from forkq.worker.revoked import MASTER_BACKSTOP, RevokedIds
from forkq.worker.scheduler import SchedulerProgram
from forkq.worker.supervision import WorkerSupervision
from forkq.worker.worker_events import master_events

if TYPE_CHECKING:
    from forkq.pool.metrics import PoolMetrics
    from forkq.worker.metrics import WorkerMetrics

log = logging.getLogger("forkq.worker")

# Containers made (net) since the collector was paused, above which the garbage is collected
# before the freeze; the bench app makes about 40,000, a 300 MiB preload tens of millions.
COLLECT_BEFORE_FREEZE_AFTER = 1_000_000


class WorkerConfig(msgspec.Struct, frozen=True):
    concurrency: int
    queues: tuple[str, ...]
    prefetch: int | None = None  # None: sized to the tasks (worker/prefetch.py)
    shutdown_timeout: float = 60.0
    loglevel: str = "INFO"
    pidfile: str | None = None
    limits: TimeLimits = msgspec.field(default_factory=TimeLimits)
    max_tasks_per_child: int | None = None
    max_memory_per_child: int | None = None  # bytes of USS
    logfile: str | None = None
    log_json: bool = False
    hostname: str = ""  # the worker's name (-n); the machine's host name when empty
    scheduler: bool = True  # fork the periodic scheduler beside the children (if any schedule)
    metrics: Address | None = None  # --metrics-port: Prometheus metrics and health checks
    control: bool = True  # fork the control agent, if the broker carries control


def new_worker_id(hostname: str) -> str:
    return f"{hostname}.{os.getpid()}.{uuid.uuid4().hex[:6]}"


def run_worker(app: Forkq, config: WorkerConfig, *, gc_was_enabled: bool | None = None) -> int:
    """`gc_was_enabled`: whether the collector was on before the caller paused it (the command
    line does, before it loads the app); by default, whether it is on now."""
    checking = bool(os.environ.get(CHECK_ENV))
    if not checking:  # the checker's output goes to the master, which logs why it failed
        logs.configure_master(config.loglevel, config.log_json, config.logfile, os.getpid())
    with collector_paused(gc.isenabled() if gc_was_enabled is None else gc_was_enabled):
        with open_worker_dir():
            pass  # an unsafe control directory is refused now, before anything is logged
        bulletin = Bulletin(tuple(config.queues))  # shared: made before the fork; too many
        # queue names for it are refused here, before anything is claimed
        pidfile = PidFile.claim(None if checking else config.pidfile)
        try:
            for hook in app.before_fork_hooks:
                hook()
        except Exception:
            log.exception("a before-fork hook failed")
            pidfile.remove()
            return exitcodes.APP_LOAD_FAILED
        # Fail here, once, if the broker or backend cannot be reached; and load their modules
        # before forking so that no child imports them again.
        try:
            app.broker.size(config.queues[0])
            app.backend.get("forkq-startup-check")
            schedules = tuple(app.schedules.values()) if config.scheduler else ()
            if schedules:  # read now, before the freeze; and where they are kept, checked
                schedule_store(app.broker, app.backend)
        except BaseException:
            pidfile.remove()
            raise
        if checking:  # before the port is bound: the running worker holds it
            return exitcodes.OK
        try:
            served = _metrics(app, config)
        except ConfigurationError:
            pidfile.remove()
            raise
        worker_metrics = served[1] if served else None
        # Before the freeze: shared by the children (the built-in tasks of workflows too).
        prepare_conversions([*app.tasks.values(), *app.builtin_tasks.values()])
        hostname = config.hostname or socket.gethostname()
        worker_id = new_worker_id(hostname)
        options = ConsumeOptions(
            worker_id, config.queues, config.prefetch, config.limits, config.max_tasks_per_child
        )
        # Read once here, before the freeze, for every child to inherit (worker/revoked.py).
        revoked = RevokedIds(app.backend, bulletin.reader(), MASTER_BACKSTOP)
        revoked.refresh()  # a failure is logged: each child reads them itself
        program = ConsumeProgram(app, options, bulletin.reader(), worker_metrics, revoked)
        supervision = WorkerSupervision(
            app, worker_id, config.queues, worker_metrics, bulletin, revoked
        )
        if app.settings.events:  # -E: the master's events, on its own connection
            dropped = worker_metrics.events_dropped if worker_metrics else None
            supervision.events = master_events(
                app.settings,
                lambda: app.backend,
                worker_id,
                hostname,
                lambda: supervision.queues,
                dropped,
            )
        companions: list[CompanionProgram] = []
        if schedules:
            companions.append(SchedulerProgram(app, schedules, worker_id))
        if config.control and carries_control(app.settings.broker_url):
            companions.append(AgentProgram(app, hostname, worker_id, bulletin.reader()))
        pool = PoolConfig(
            concurrency=config.concurrency,
            title=f"forkq: {app.main}",
            shutdown_timeout=config.shutdown_timeout,
            tick_interval=app.broker.lease_ttl / 3,
            max_memory_per_child=config.max_memory_per_child,
            reload_check=(sys.executable, *sys.orig_argv[1:]),
            hostname=hostname,
        )
        # Everything loaded so far is shared copy-on-write with the children; freezing it
        # keeps the collector from writing to those pages (and so copying them) in every child.
        # No gc.collect() first, as CPython's gc docs advise: freeing the start-up's garbage
        # would leave holes in shared pages that the children's allocations then fill (and
        # copy); what it would free is a few hundred objects for a typical app, and a collection
        # costs milliseconds of start-up. Unless start-up made a great many objects (a big preload):
        # then its garbage could be big too, frozen for good, and a collection is a small
        # part of the time the preload took.
        if gc.get_count()[0] > COLLECT_BEFORE_FREEZE_AFTER:
            gc.collect()
        if options.fork_per_task:
            _warm_package_metadata()
        gc.freeze()
    private = [] if pidfile.fd is None else [pidfile.fd]
    pool_metrics = served[0] if served else None
    master = Master(program, supervision, pool, private, companions, bulletin, pool_metrics)
    with pidfile:
        log_banner(app, config, hostname, os.getpid())
        if supervision.events is not None:
            supervision.events.attach(master)
        code = master.run()
        if supervision.events is not None:
            supervision.events.stopped()
        if master.reload_requested:
            pidfile.hand_over()
            _reexec(app)
    return code


def _metrics(app: Forkq, config: WorkerConfig) -> tuple[PoolMetrics, WorkerMetrics] | None:
    """With --metrics-port: its socket bound now, so that a port in use stops the worker before
    it forks; and the tally every child counts in, made before the fork. ConfigurationError,
    saying what to change, when the port cannot be had."""
    if config.metrics is None:
        return None
    # Imported here: prometheus_client takes tens of milliseconds to import (its package
    # loads its HTTP servers), which a worker without metrics does not pay at start.
    from forkq.pool.metrics import PoolMetrics
    from forkq.worker.metrics import WorkerMetrics

    try:
        listener = listen(config.metrics)
    except socket.gaierror as exc:
        raise ConfigurationError(
            f"cannot serve metrics on {config.metrics}: {exc.strerror or exc}; give "
            "--metrics-host an address of this host (0.0.0.0: all of its IPv4 addresses)"
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve metrics on {config.metrics}: {exc.strerror or exc}; free the port "
            "or choose another with --metrics-port (--metrics-host for the address)"
        ) from None
    names = [*app.tasks, *app.builtin_tasks]
    worker = WorkerMetrics(names, slot_capacity(config.concurrency))
    return PoolMetrics(listener, worker, worker.tally), worker


@contextmanager
def collector_paused(resume: bool) -> Iterator[None]:
    """No collections while the worker starts, as CPython's gc docs advise for a process that
    forks without exec: importing the app and running its hooks would trigger dozens (about
    9 ms of a worker's start-up, more for a big preload), each moving live objects' headers
    between generations and so writing to pages that are then frozen and shared. `resume`:
    turn the collector back on at the end."""
    gc.disable()
    try:
        yield
    finally:
        if resume:
            gc.enable()


def _warm_package_metadata() -> None:
    """Libraries look their own version up at run time (redis-py for every new connection it
    makes), and a process's first lookup scans sys.path: 2-3 ms. With a process per task
    (`--max-tasks-per-child 1`) that would be 2-3 ms of every task whose code opens such a
    connection; done once here, the caches it fills are shared by all of them. (A long-lived
    child pays it once at most, so the other modes skip it: it is start-up time.)"""
    with suppress(metadata.PackageNotFoundError):  # running from a bare checkout
        metadata.version("forkq")


def _reexec(app: Forkq) -> NoReturn:
    """HUP: the same process, PID and pidfile, running the code as it is on disk now."""
    log.info("re-executing %s", " ".join(sys.orig_argv))
    app.close()
    logging.shutdown()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
