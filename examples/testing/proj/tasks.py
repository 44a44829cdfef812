"""The app under test: a task that adds, one that retries, one that fails."""

from __future__ import annotations

from forkq import Forkq, Task

app = Forkq("proj")  # in tests, the fixtures choose where messages and results go

ATTEMPTS: list[int] = []  # tries of `flaky`, visible to eager tests (same process)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(
    bind=True,
    autoretry_for=(ConnectionError,),
    retry_kwargs={"max_retries": 3, "countdown": 0.1},
)
def flaky(self: Task, failures: int) -> str:
    """Fails `failures` times with ConnectionError, then succeeds."""
    ATTEMPTS.append(self.request.retries)
    if self.request.retries < failures:
        raise ConnectionError("the service hung up")
    return f"done after {self.request.retries} retries"


@app.task
def divide(x: float, y: float) -> float:
    return x / y
