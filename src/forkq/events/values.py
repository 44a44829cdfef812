"""What an event says: tiny frozen records, one per thing that happened.

A task event names the task (id, name, queue) and where it happened (the worker's id and the
child's slot index; a client's `sent` has neither). A worker event is the master's: online
when its pool starts, a heartbeat on its tick with each child's scoreboard row and the memory
of every process, offline when it stops.
"""

from __future__ import annotations

import enum

import msgspec


class TaskEventKind(enum.Enum):
    SENT = "sent"  # published by a client (setting events_sent)
    RECEIVED = "received"  # fetched by a child
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRIED = "retried"
    REVOKED = "revoked"  # discarded because revoked, or terminated
    REJECTED = "rejected"  # dead-lettered without running


class WorkerEventKind(enum.Enum):
    ONLINE = "online"
    HEARTBEAT = "heartbeat"
    OFFLINE = "offline"


class TaskEvent(msgspec.Struct, frozen=True, tag="task", omit_defaults=True):
    kind: TaskEventKind
    task_id: str
    name: str
    queue: str
    at: float  # Unix time
    worker: str = ""  # the worker's id; empty for a client's event
    child: int = -1  # the child's slot index; -1 when not from a child
    runtime: float | None = None  # seconds, for succeeded, failed and retried
    reason: str = ""  # failed: the exception's line; rejected, revoked, retried: why
    args: str = ""  # sent, received: the call's arguments as text, when the sender gives them
    # sent, received: the chord this task is a header member of, its size and its body's
    # first task (workflow.py)
    group: str = ""
    group_size: int = 0
    group_body: str = ""


class ChildRow(msgspec.Struct, frozen=True, omit_defaults=True):
    """One child in a heartbeat: its scoreboard slot, how many children its slot has had
    replaced, and its memory from /proc (bytes). A body without the later fields (an older
    worker's) decodes with their defaults."""

    index: int
    pid: int
    state: str  # the scoreboard's state, lower case: idle, busy, ...
    task_id: str = ""
    task_name: str = ""
    tasks_done: int = 0
    rss: int = 0
    pss: int = 0
    uss: int = 0
    shared: int = 0
    started_at: float = 0.0  # Unix time the current task started; 0 unless busy
    restarts: int = 0  # children of this slot replaced (died, recycled) since the pool started


class WorkerEvent(msgspec.Struct, frozen=True, tag="worker", omit_defaults=True):
    kind: WorkerEventKind
    worker: str  # the worker's id
    host: str  # its host name (-n)
    pid: int  # the master's
    at: float  # Unix time
    queues: tuple[str, ...] = ()
    concurrency: int = 0
    children: tuple[ChildRow, ...] = ()  # heartbeat only
    master_rss: int = 0  # heartbeat only: the master's memory, bytes
    master_pss: int = 0
    master_uss: int = 0


Event = TaskEvent | WorkerEvent
