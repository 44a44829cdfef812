"""Message bodies the tests send as a hostile producer would."""

from __future__ import annotations


def nested_too_deeply(task_id: str, queue: str = "q", depth: int = 10_000) -> bytes:
    """A task whose argument nests `depth` levels (20 KB at 10,000): under every size limit,
    too deep for any decoder that recurses. It names a task every test app has."""
    args = b"[" * depth + b"]" * depth
    head = f'{{"id": "{task_id}", "task": "e2eapp.add", "queue": "{queue}", "created_at": 1, '
    return head.encode() + b'"args": [' + args + b", 0]}"
