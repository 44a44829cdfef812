"""Checked by mypy (strict), never run: how `@app.task` types tasks and their results.

A line that must be a type error carries `# type: ignore[code]`: strict mypy reports an
ignore that is not needed (`warn_unused_ignores`), so each of those lines proves an error.
"""

from __future__ import annotations

from typing import Any

from typing_extensions import assert_type

from forkq import AsyncResult, Forkq, Task, TaskFailed

app = Forkq("typed")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(queue="high", max_retries=5)
def greet(name: str, *, polite: bool = False) -> str:
    return f"hello {name}" if polite else name


@app.task(bind=True)
def fetch(self: Task[Any, Any], url: str) -> bytes:
    return url.encode()


@app.task
async def awaited(n: int) -> float:
    return n / 2


@app.task(bind=True, ignore_result=True)
async def bound_awaited(self: Any, n: int) -> list[int]:
    return [n]


def bind_unknown_until_run_time(flag: bool) -> None:
    task = app.task(bind=flag)(lambda *args: None)
    assert_type(task, Task[..., Any])


def results() -> None:
    typed: Task[[int, int], int] = add
    del typed
    assert_type(add.delay(1, 2), AsyncResult[int])
    assert_type(add.delay(1, 2).get(), int)
    assert_type(add.delay(1, 2).wait(timeout=1), int)
    assert_type(add.delay(1, 2).get(propagate=False), int | TaskFailed)
    assert_type(add(1, 2), int)
    assert_type(greet.delay("a", polite=True).get(), str)
    assert_type(fetch.delay("http://x").get(), bytes)  # bound: `self` is not a parameter
    assert_type(awaited.delay(3).get(), float)  # the awaited type
    assert_type(bound_awaited.delay(3).get(), list[int])
    assert_type(app.AsyncResult("some-id").get(), Any)
    assert_type(add.apply_async((1, 2), countdown=1).get(), int)


def errors() -> None:
    add.delay(1, "x")  # type: ignore[arg-type]
    add.delay(1)  # type: ignore[call-arg]
    add.delay(1, 2, 3)  # type: ignore[call-arg]
    greet.delay("a", rude=True)  # type: ignore[call-arg]
    fetch.delay(fetch, "http://x")  # type: ignore[arg-type, call-arg]
    awaited.delay("3")  # type: ignore[arg-type]
    text: str = add.delay(1, 2).get()  # type: ignore[assignment]
    del text
