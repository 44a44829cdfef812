"""Message bodies the tests send as a hostile producer would."""

from __future__ import annotations

# Deeper than JSON decoding goes on any Python: msgspec stops at the recursion limit (1,000 by
# default) up to 3.11, at a C recursion limit of its own from 3.12 (10,000 levels in 3.13).
TOO_DEEP = 12_000


def nested_too_deeply(task_id: str, queue: str = "q", depth: int = TOO_DEEP) -> bytes:
    """A task whose argument nests `depth` levels (24 KB at 12,000): under every size limit,
    too deep for any decoder that recurses. It names a task every test app has."""
    args = b"[" * depth + b"]" * depth
    head = f'{{"id": "{task_id}", "task": "e2eapp.add", "queue": "{queue}", "created_at": 1, '
    return head.encode() + b'"args": [' + args + b", 0]}"
