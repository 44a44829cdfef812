"""The systems of suites 1, 2, 3 and 5 (their labels, app modules, interpreters and
environments), and forkq's rows of any suite again at a baseline revision."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

from harness import AMQP, REDIS, Interpreters, System

FLOOR = "fork-floor"
METRICS_PORT = "19191"  # one worker runs at a time


def all_systems(pythons: Interpreters, sqlite: Path) -> list[System]:
    forkq, peers = pythons.forkq, pythons.peers
    common = {"BENCH_REDIS_URL": REDIS, "BENCH_BROKER_URL": REDIS}
    run = uuid.uuid4().hex[:8]  # RabbitMQ queues of this run only
    amqp = {
        "BENCH_REDIS_URL": REDIS,  # the task bodies' counter
        "FORKQ_RESULT_BACKEND": REDIS,  # forkq needs one for failures; results are ignored
        "BENCH_CELERY_QUEUE": f"bench-{run}",
    }
    return [
        System("forkq", "forkq_app", forkq, common, bulk=True),
        System(  # a task with arguments, typing=False and unannotated: checks, conversion off
            "forkq-args",
            "forkq_app",
            forkq,
            {**common, "BENCH_ARGS": "plain"},
            bulk=True,
            measures_latency=False,
        ),
        System(  # the same, annotated, typing=True: checked in delay(), converted in the child
            "forkq-typed",
            "forkq_app",
            forkq,
            {**common, "BENCH_ARGS": "typed"},
            bulk=True,
            measures_latency=False,
        ),
        System(  # --metrics-port (FORKQ_METRICS_PORT): children count every task for a scrape
            "forkq-metrics",
            "forkq_app",
            forkq,
            {**common, "FORKQ_METRICS_PORT": METRICS_PORT},
            bulk=True,
            measures_latency=False,
        ),
        System(  # -E (FORKQ_EVENTS): task and worker events kept in the result backend (Redis)
            "forkq-events",
            "forkq_app",
            forkq,
            {**common, "FORKQ_EVENTS": "1"},
            bulk=True,
            measures_latency=False,
        ),
        System("huey", "huey_app", peers, common),
        System("dramatiq", "dramatiq_app", peers, common),
        System("dramatiq-p64", "dramatiq_app", peers, {**common, "dramatiq_queue_prefetch": "64"}),
        System("celery", "celery_app", peers, common),
        System("rq", "rq_app", peers, common, bulk=True, tasks_scale=0.05),
        System(  # fork per task: a new process for every task
            "forkq-fork1",
            "forkq_app",
            forkq,
            {**common, "BENCH_MAX_TASKS_PER_CHILD": "1"},
            tasks_scale=0.1,
            measures_latency=False,
        ),
        System(  # no worker: forking alone, fork per task's ceiling (bench/apps/forkfloor.py)
            FLOOR,
            "forkq_app",
            forkq,
            common,
            tasks_scale=0.1,
            measures_latency=False,
        ),
        System(
            "celery-fork1",
            "celery_app",
            peers,
            {**common, "BENCH_MAX_TASKS_PER_CHILD": "1"},
            tasks_scale=0.02,
            measures_latency=False,
        ),
        System(
            "forkq-rabbitmq",
            "forkq_app",
            forkq,
            {**amqp, "BENCH_BROKER_URL": f"{AMQP}?prefix=bench-{run}"},
            bulk=True,
            on_redis=False,
        ),
        System(
            "celery-rabbitmq",
            "celery_app",
            peers,
            {**amqp, "BENCH_BROKER_URL": AMQP},
            on_redis=False,
        ),
        System(  # the embedded default broker; the task bodies' counter stays in Redis
            "forkq-sqlite",
            "forkq_app",
            forkq,
            {**common, "BENCH_BROKER_URL": f"sqlite:///{sqlite}"},
            bulk=True,
            on_redis=False,
        ),
    ]


def baseline_systems(systems: list[System], forkq: str, python: str, revision: str) -> list[System]:
    """forkq's systems again, running the baseline's code: LABEL@REVISION."""
    return [
        replace(s, label=f"{s.label}@{revision}", python=python)
        for s in systems
        if s.python == forkq and s.label != FLOOR
    ]
