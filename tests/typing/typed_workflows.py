"""Checked by mypy (strict), never run: the types of workflows and their results (see
typed_tasks.py for the convention)."""

from __future__ import annotations

from typing import Any

from typing_extensions import assert_type

from forkq import AsyncResult, Forkq, GroupResult, Signature, chain, chord, group

app = Forkq("typed-workflows")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def tsum(values: list[int]) -> int:
    return sum(values)


assert_type(add.s(1), Signature)
assert_type(add.s(1) | add.s(2), chain)
assert_type(chain(add.s(1, 1), add.s(2)).delay(), AsyncResult[Any])
assert_type(group(add.s(i, i) for i in range(3)).delay(), GroupResult)
assert_type(group(add.s(1, 1))(), GroupResult)
assert_type(chord([add.s(1, 1)], tsum.s()).delay(), AsyncResult[Any])
assert_type(chord([add.s(1, 1)])(tsum.s()), AsyncResult[Any])
assert_type(group(add.s(1, 1)).delay().get(timeout=1), list[Any])
assert_type(app.gather([add.delay(1, 2)]), list[Any])
assert_type(add.apply_async((1, 2), link=tsum.s()), AsyncResult[int])
assert_type(add.chunks([(1, 2)], 10), group)

add.s(1).set(queue=5)  # options are checked when set, not typed
chord(add.s(1, 1))  # type: ignore[arg-type]  # a header is signatures, not one
