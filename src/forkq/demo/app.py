"""The demo app: a read-only product table built at import, shared by every child.

The master imports this module once, so the table is built once and every forked child
reads the same physical pages until it writes to them.
"""

from __future__ import annotations

import random

from forkq import Forkq

ROWS = 300_000

app = Forkq("forkq-demo")


def _build_table(rows: int) -> list[tuple[int, str, float]]:
    rng = random.Random(42)
    return [(sku, f"product-{sku:07d}", round(rng.uniform(1, 500), 2)) for sku in range(rows)]


TABLE = _build_table(ROWS)  # ~50 MB of Python objects


@app.task
def basket_total(skus: list[int]) -> float:
    """Price a basket by looking up each item in the shared table."""
    return round(sum(TABLE[sku][2] for sku in skus), 2)


@app.task
def ready() -> bool:
    """Answers once a child is serving; touches nothing shared."""
    return True
