"""`forkq demo`: the main job on the embedded SQLite default."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from forkq.cli.main import cli


@cli.command()
@click.option("--tasks", type=click.IntRange(min=1), default=3000, show_default=True)
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=4, show_default=True)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    help="Give up if the tasks are not all done after this many seconds.",
)
def demo(tasks: int, concurrency: int, timeout: float) -> None:
    """Run a worker over an app that preloads a table; show throughput and shared memory."""
    from forkq.demo.run import DemoOptions, run_demo

    sys.exit(run_demo(DemoOptions(tasks, concurrency, timeout), Console()))
