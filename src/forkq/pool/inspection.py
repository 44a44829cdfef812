"""What the master answers on its control socket: built from the scoreboard and /proc only,
so inspecting a busy worker costs its children nothing; and the one registry of its
commands (`handlers`), these and those that act (`pool/commands.py`)."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from forkq.pool import commands
from forkq.pool.bulletin import Bulletin
from forkq.pool.control import Handler
from forkq.pool.process_memory import memory_json, process_tree_memory
from forkq.pool.revoke import RevokingPool, revoke
from forkq.pool.scoreboard import Scoreboard, SlotState, SlotView


class PoolView(RevokingPool, Protocol):
    title: str
    hostname: str
    concurrency: int
    started_at: float
    scoreboard: Scoreboard
    bulletin: Bulletin

    @property
    def restarts(self) -> Mapping[int, int]:
        """Children replaced, by slot index."""
        ...

    def child_slots(self) -> Sequence[tuple[int, int]]:
        """(index, pid) of every live child."""
        ...


class Pool(PoolView, commands.PoolControl, Protocol):
    """The master, as its commands see it."""


def handlers(pool: Pool, given: Mapping[str, Handler]) -> dict[str, Handler]:
    """The control socket's commands, bound to this pool: the one registry of what a master
    answers (each command's module adds its line here), with those the worker layer gives
    (`PoolConfig.commands`: what the app is, where no agent answers it)."""
    inspections = {
        name: functools.partial(_without_args, answer, pool)
        for name, answer in (
            ("ping", ping),
            ("stats", stats),
            ("active", active),
            ("memory", memory),
            ("reserved", reserved),
        )
    }
    actions: dict[str, Handler] = {
        name: functools.partial(act, pool)
        for name, act in (
            ("pool-grow", commands.pool_grow),
            ("pool-shrink", commands.pool_shrink),
            ("shutdown", commands.shutdown),
            ("add-queue", commands.add_queue),
            ("cancel-queue", commands.cancel_queue),
            ("revoke", revoke),
        )
    }
    return {**given, **inspections, **actions}


def _without_args(
    answer: Callable[[PoolView], dict[str, Any]], pool: PoolView, args: Mapping[str, Any]
) -> dict[str, Any]:
    return answer(pool)


def ping(pool: PoolView) -> dict[str, Any]:
    return {"pong": True, "pid": os.getpid(), "title": pool.title, "hostname": pool.hostname}


def stats(pool: PoolView) -> dict[str, Any]:
    now = time.time()
    children = [
        _child(index, pid, pool.scoreboard.read(index), pool.restarts.get(index, 0), now)
        for index, pid in sorted(pool.child_slots())
    ]
    return {
        "pid": os.getpid(),
        "title": pool.title,
        "hostname": pool.hostname,
        "uptime": round(now - pool.started_at, 3),
        "concurrency": pool.concurrency,
        "queues": list(pool.bulletin.posted.queues),
        "children": children,
        "done": sum(c["done"] for c in children),
        "failed": sum(c["failed"] for c in children),
        "restarts": sum(pool.restarts.values()),
    }


def active(pool: PoolView) -> dict[str, Any]:
    busy = [c for c in stats(pool)["children"] if c["state"] == SlotState.BUSY.name.lower()]
    return {"pid": os.getpid(), "title": pool.title, "active": busy}


def reserved(pool: PoolView) -> dict[str, Any]:
    """Messages each child fetched and holds but has not started (the rest of its batch)."""
    held = [
        {"index": c["index"], "pid": c["pid"], "reserved": c["reserved"]}
        for c in stats(pool)["children"]
    ]
    total = sum(c["reserved"] for c in held)
    return {"pid": os.getpid(), "title": pool.title, "reserved": total, "children": held}


def memory(pool: PoolView) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "title": pool.title,
        **memory_json(process_tree_memory(os.getpid())),
    }


def _child(index: int, pid: int, seen: SlotView, restarts: int, now: float) -> dict[str, Any]:
    booted = seen.pid == pid  # a child that has not written its slot yet is starting
    busy = booted and seen.state == SlotState.BUSY
    return {
        "index": index,
        "pid": pid,
        "state": seen.state.name.lower() if booted else SlotState.STARTING.name.lower(),
        "task_id": seen.task_id if busy else None,
        "task": seen.task_name if busy else None,
        "runtime": round(now - seen.started_at, 3) if busy else None,
        "done": seen.done if booted else 0,
        "failed": seen.failed if booted else 0,
        "reserved": seen.reserved if booted else 0,
        "restarts": restarts,
    }
