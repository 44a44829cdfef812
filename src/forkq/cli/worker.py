"""`forkq worker`: options to a typed WorkerConfig, then the service."""

from __future__ import annotations

import gc
import os
import sys

import click

from forkq.cli.main import app_options, cli, resolve_app
from forkq.cli.worker_options import hostname, listen_host, memory_size, port_number


def prefetch_option(_ctx: click.Context, _param: click.Parameter, value: str) -> int | None:
    """`auto` (None: sized to the tasks, worker/prefetch.py) or a whole number from 1."""
    if value == "auto":
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise click.BadParameter(f"{value!r}: give auto or a whole number from 1")
    return number


@cli.command()
@app_options
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=os.cpu_count() or 1,
    show_default=True,
    help="Child processes.",
)
@click.option("-Q", "--queues", help="Comma-separated queues to consume [default: the app's].")
@click.option(
    "-l",
    "--loglevel",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error", "critical"], case_sensitive=False),
)
@click.option(
    "-n",
    "--hostname",
    "worker_name",
    metavar="NAME",
    callback=hostname,
    help="The worker's name, shown by inspect and the start-up banner; %h is this host's "
    "name, %n its part before the first dot, %d the rest [default: %h].",
)
@click.option(
    "--prefetch",
    metavar="auto|N",
    default="auto",
    callback=prefetch_option,
    show_default=True,
    help="Messages a child fetches at once: N, or auto (about 20 ms of its tasks, 1 to 16).",
)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds running tasks get on warm shutdown.",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=0, min_open=True),
    help="Hard limit in seconds: the child is killed and the task fails.",
)
@click.option(
    "--soft-time-limit",
    type=click.FloatRange(min=0, min_open=True),
    help="Soft limit in seconds: SoftTimeLimitExceeded is raised in the task.",
)
@click.option(
    "--max-tasks-per-child",
    type=click.IntRange(min=1),
    help="Replace a child after this many tasks (plus up to 10% jitter).",
)
@click.option(
    "--max-memory-per-child",
    metavar="SIZE",
    callback=memory_size,
    help="Replace a child whose private memory (USS) passes this: 200MB, 1.5GiB, 512MiB; a "
    "bare number is MiB (Celery's unit is KiB of RSS).",
)
@click.option(
    "--max-deliveries",
    type=click.IntRange(min=1),
    help="Times a task's process may die before it fails as WorkerLost [default: 3].",
)
@click.option("--pidfile", type=click.Path(dir_okay=False), help="Write the master's pid here.")
@click.option("--logfile", type=click.Path(dir_okay=False), help="Log here instead of stderr.")
@click.option("--log-json", is_flag=True, help="One JSON object per log line.")
@click.option(
    "--no-scheduler",
    is_flag=True,
    help="Fork no periodic scheduler (by default every worker runs one; one of them leads).",
)
@click.option(
    "--metrics-port",
    metavar="PORT",
    envvar="FORKQ_METRICS_PORT",
    callback=port_number,
    help="Serve Prometheus metrics (/metrics) and health checks (/healthz, /readyz) on this "
    "TCP port, from the master [env FORKQ_METRICS_PORT; default: not served].",
)
@click.option(
    "--metrics-host",
    metavar="ADDRESS",
    envvar="FORKQ_METRICS_HOST",
    default="0.0.0.0",
    show_default=True,
    callback=listen_host,
    help="Address the metrics port listens on: 0.0.0.0 for Prometheus and Kubernetes probes "
    "from elsewhere, 127.0.0.1 for this host only [env FORKQ_METRICS_HOST].",
)
@click.option(
    "-E",
    "--events",
    is_flag=True,
    help="Send task and worker events (forkq events reads them) [setting events].",
)
@click.option(
    "--no-control",
    is_flag=True,
    help="Fork no control agent: inspect and control then reach this worker only through its "
    "host's control socket (by default every worker on Redis or RabbitMQ runs one).",
)
def worker(
    app_spec: str | None,
    broker: str | None,
    backend: str | None,
    concurrency: int,
    queues: str | None,
    loglevel: str,
    worker_name: str,
    prefetch: int | None,
    shutdown_timeout: float,
    time_limit: float | None,
    soft_time_limit: float | None,
    max_tasks_per_child: int | None,
    max_memory_per_child: int | None,
    max_deliveries: int | None,
    pidfile: str | None,
    logfile: str | None,
    log_json: bool,
    no_scheduler: bool,
    metrics_port: int | None,
    metrics_host: str,
    no_control: bool,
    events: bool,
) -> None:
    """Start a prefork worker: forkq worker -A proj.tasks -c 4 -Q high,default."""
    gc_was_enabled = gc.isenabled()
    gc.disable()  # until the freeze, from before the app loads: see collector_paused
    try:
        from forkq.pool.http_endpoint import Address
        from forkq.worker.limits import TimeLimits
        from forkq.worker.service import WorkerConfig, run_worker

        if not (app_spec or click.get_current_context().find_root().params.get("app_spec")):
            raise click.UsageError("worker needs the app: -A module[:attribute]")
        app = resolve_app(app_spec, broker, backend)
        app.configure(max_deliveries=max_deliveries, events=events or None)
        if app.settings.eager:
            raise click.UsageError(
                "the app is in eager mode (eager=True or FORKQ_EAGER): a worker would run the "
                "tasks its tasks publish in place; turn it off for workers"
            )
        listed = (queues or app.settings.default_queue).split(",")
        names = tuple(q.strip() for q in listed if q.strip())
        if not names:
            raise click.BadParameter("give at least one queue name", param_hint="-Q")
        config = WorkerConfig(
            concurrency=concurrency,
            queues=names,
            prefetch=prefetch,
            shutdown_timeout=shutdown_timeout,
            loglevel=loglevel,
            pidfile=pidfile,
            logfile=logfile,
            log_json=log_json,
            limits=TimeLimits(hard=time_limit, soft=soft_time_limit),
            max_tasks_per_child=max_tasks_per_child,
            max_memory_per_child=max_memory_per_child,
            hostname=worker_name,
            scheduler=not no_scheduler,
            metrics=None if metrics_port is None else Address(metrics_host, metrics_port),
            control=not no_control,
        )
    except BaseException:
        if gc_was_enabled:  # a caller in the same process (tests, embedding) gets it back
            gc.enable()
        raise
    sys.exit(run_worker(app, config, gc_was_enabled=gc_was_enabled))
