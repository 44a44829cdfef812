"""Unique tasks: a second send of the same call, while the first is pending (or running),
gives back the first one's result handle instead of enqueuing it again.

    send (Forkq.send_unique) ─► lock(key, task id, unique_for) in the result backend
                                  ├─► taken: publish (a failed publish unlocks)
                                  └─► held: the holder's handle, nothing published
    worker: the task starts ─► unlock (held while pending, the default)
            the task ends, fails or is dead-lettered ─► unlock (held while running)

The key is the task's name and `unique_key`, or a digest of the arguments. The lock always
expires after `unique_for` seconds, so that nothing can hold it for ever: a client that dies
between taking it and publishing, a worker killed for a hard time limit. Unlocking names the
holder, so a lock that expired and was taken by a later send is not released by the earlier
task. A redelivered task unlocks again, harmlessly.
"""

from __future__ import annotations

import enum
import hashlib
from typing import Any

import msgspec

from forkq.engines.contract import ResultBackend
from forkq.envelope import Message, Unique
from forkq.exceptions import ConfigurationError

DEFAULT_UNIQUE_FOR = 3600.0  # seconds, for a call given `unique_key` on a task without one

_encoder = msgspec.json.Encoder(order="sorted")


class UniqueWhile(enum.Enum):
    """How long a unique task's lock is held."""

    PENDING = "pending"  # until a worker starts it
    RUNNING = "running"  # until it ends: stored, failed or dead-lettered


def unique_while(task: str, value: object) -> UniqueWhile:
    """The task option `unique_while` ("pending" or "running"), checked."""
    try:
        return value if isinstance(value, UniqueWhile) else UniqueWhile(value)
    except ValueError:
        raise ConfigurationError(
            f"task {task}: unique_while must be 'pending' or 'running', not {value!r}"
        ) from None


def check_unique_for(task: str, seconds: float | None) -> None:
    if seconds is not None and not (
        isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and 0 < seconds < 1e9
    ):
        raise ConfigurationError(f"task {task}: unique_for must be a number of seconds > 0")


def unique_of(
    task: str, args: tuple[Any, ...], kwargs: dict[str, Any], key: str | None, until_end: bool
) -> Unique:
    """The lock of one call: named by the task and `key`, or by a digest of the arguments
    (keyword order does not matter)."""
    if key is None:
        try:
            encoded = _encoder.encode([list(args), kwargs])
        except (TypeError, msgspec.EncodeError) as exc:
            raise TypeError(f"task {task} arguments are not JSON-serialisable: {exc}") from None
        key = hashlib.blake2b(encoded, digest_size=16).hexdigest()
    return Unique(f"{task}:{key}", until_end)


def unlock_at_start(results: ResultBackend, message: Message) -> None:
    """A worker starts the task: a lock held while pending goes."""
    if message.unique is not None and not message.unique.until_end:
        results.unlock(message.unique.key, message.id)


def unlock_at_end(results: ResultBackend, message: Message) -> None:
    """The task ended (or will never run): whatever lock it holds goes."""
    if message.unique is not None:
        results.unlock(message.unique.key, message.id)
