"""The tutorial's tasks. Workers start in examples/celery_tutorial/ (see README.md there):
`forkq worker -A proj` consumes the default queue, `... -Q hipri` only the hipri queue.
"""

from __future__ import annotations

from forkq import Task
from proj.celery import app


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def mul(x: int, y: int) -> int:
    return x * y


@app.task
def xsum(numbers: list[int]) -> int:
    return sum(numbers)


@app.task(queue="hipri")  # routed by its own option: `.delay()` sends it to hipri
def urgent_add(x: int, y: int) -> int:
    return x + y


RETRY_COUNTDOWN = 0.5  # seconds between tries of `fetch`


def call_flaky_service(attempt: int, failures: int) -> str:
    """Stands for a remote service that is down for the first `failures` attempts."""
    if attempt < failures:
        raise ConnectionError(f"service unavailable on attempt {attempt + 1}")
    return "ok"


@app.task(bind=True, max_retries=3)
def fetch(self: Task, failures: int) -> int:
    """Call the service, retrying a failed call after RETRY_COUNTDOWN seconds; return how many
    attempts it took. After `max_retries` retries the task fails with the ConnectionError."""
    try:
        call_flaky_service(self.request.retries, failures)
    except ConnectionError as exc:
        raise self.retry(exc=exc, countdown=RETRY_COUNTDOWN) from exc
    return self.request.retries + 1
