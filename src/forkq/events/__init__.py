"""Task and worker events: what they say (`values`) and their bytes (`codec`).

    child (worker/task_events.py) ─┐                         ┌─► forkq events (live, --json)
    master (worker/worker_events.py) ─► encode ─► ResultBackend.add_events ─► read_events ─► decode
    client (events_sent) ──────────┘   (one batch)   (capped, durable)   (from an offset)

The engines keep bytes and offsets only; this package is the one place events are made into
bytes and read back, defensively: a body that is not an event decodes to None.
"""

from forkq.events.codec import decode, encode
from forkq.events.values import (
    ChildRow,
    Event,
    TaskEvent,
    TaskEventKind,
    WorkerEvent,
    WorkerEventKind,
)

__all__ = [
    "ChildRow",
    "Event",
    "TaskEvent",
    "TaskEventKind",
    "WorkerEvent",
    "WorkerEventKind",
    "decode",
    "encode",
]
