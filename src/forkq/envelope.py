"""The message envelope: what a client publishes and a worker executes.

Wire format (version 1)::

    unsigned:  <JSON object of Message>
    signed:    b"fq1." + <64 hex chars: HMAC-SHA256(secret, json)> + b"." + <JSON object>

(the scheme of `forkq.signing`, which control messages share)

A field at its default is left out of the JSON (a decoder fills it in again), so a message
carries only what it says: `flow`, a workflow's part (forkq.flow), is absent from
every message that is not a step of one.

Brokers treat a message as opaque bytes; only this module reads them. Decoding trusts nothing:
size is checked before parsing, the signature before the JSON, and the JSON against the
typed `Message` schema. Every failure is a `MessageRejected` carrying the reason and, when it
can be read from an authenticated message, the task id, so the worker can dead-letter the
message and fail the task instead of crashing.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, NamedTuple

import msgspec

from forkq.exceptions import MessageRejected
from forkq.flow import Flow, flow_problem
from forkq.signing import SignatureRefused, Signer

VERSION = 1


class Unique(msgspec.Struct, frozen=True):
    """A unique task's lock: held from sending until the task starts, or, `until_end`, until
    it ends (stored, failed or dead-lettered); `key` names it in the result backend."""

    key: str
    until_end: bool = False


class Message(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One task invocation. Times are Unix timestamps in seconds."""

    v: int = VERSION
    id: str
    task: str
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    queue: str
    eta: float | None = None
    expires: float | None = None
    retries: int = 0
    priority: int = 0
    headers: dict[str, str] = {}
    created_at: float
    origin: str = ""
    flow: Flow | None = None  # what follows this task in a workflow
    unique: Unique | None = None  # a unique task's lock (forkq/unique.py)


def new_task_id() -> str:
    return str(uuid.uuid4())


def origin() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def make_message(
    task: str,
    args: Iterable[Any],
    kwargs: Mapping[str, Any],
    *,
    queue: str,
    task_id: str | None = None,
    eta: float | None = None,
    expires: float | None = None,
    retries: int = 0,
    priority: int = 0,
    headers: dict[str, str] | None = None,
    unique: Unique | None = None,
) -> Message:
    return Message(
        id=task_id or new_task_id(),
        task=task,
        args=list(args),
        kwargs=dict(kwargs),
        queue=queue,
        eta=eta,
        expires=expires,
        retries=retries,
        priority=priority,
        headers=headers or {},
        created_at=time.time(),
        origin=origin(),
        unique=unique,
    )


class Names(NamedTuple):
    """What a message says it is, read without decoding it: for reasons and listings."""

    task: str | None
    id: str | None


class Codec:
    """Encodes and decodes messages with the app's size limit and optional HMAC secret."""

    def __init__(self, *, secret: str | None, max_bytes: int) -> None:
        self._signer = Signer(secret)
        self.max_bytes = max_bytes
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(Message)

    def encode(self, message: Message) -> bytes:
        try:
            body = self._encoder.encode(message)
        except (TypeError, msgspec.EncodeError, RecursionError) as exc:
            raise TypeError(
                f"task {message.task} arguments are not JSON-serialisable: {exc}"
            ) from None
        body = self._signer.sign(body)
        if len(body) > self.max_bytes:
            raise ValueError(
                f"message for {message.task} is {len(body)} bytes, over the limit of "
                f"{self.max_bytes} (max_message_bytes)"
            )
        return body

    def decode(self, data: bytes) -> Message:
        if len(data) > self.max_bytes:
            raise MessageRejected(
                f"message of {len(data)} bytes exceeds max_message_bytes={self.max_bytes}",
                _peek_id(data[: self.max_bytes]) if not self._signer.signs else None,
                trusted=not self._signer.signs,
            )
        body = self._verified_body(data)
        try:
            message = self._decoder.decode(body)
        except Exception as exc:  # whatever the bytes hold, the answer is a rejection
            raise MessageRejected(f"malformed message: {_why(exc)}", _peek_id(body)) from None
        _validate(message)
        return message

    def trusted_id(self, data: bytes) -> str | None:
        """The task id of a message that is not to be decoded, by a flat scan of its top
        level (no recursion, whatever its depth); None unless its signature checks."""
        return self.trusted_names(data).id

    def trusted_names(self, data: bytes) -> Names:
        """The task name and id any bytes claim at their top level, by the same flat scan,
        each None when absent, not a string of 1 to 200 characters, or the signature fails
        (a signed message read without the secret fails too)."""
        try:
            body = self._verified_body(data)
        except MessageRejected:
            return Names(None, None)
        found = _top_level_strings(body, (b'"task"', b'"id"'))
        return Names(*(_fit(found.get(key)) for key in (b'"task"', b'"id"')))

    def _verified_body(self, data: bytes) -> bytes:
        try:
            return self._signer.verified(data)
        except SignatureRefused as exc:
            raise MessageRejected(str(exc), trusted=False) from None


def _validate(message: Message) -> None:
    if message.v != VERSION:
        raise MessageRejected(f"unsupported envelope version {message.v}", message.id)
    if not message.id or not message.task or not message.queue:
        raise MessageRejected("id, task and queue must be non-empty", message.id or None)
    if message.retries < 0:
        raise MessageRejected(f"negative retries {message.retries}", message.id)
    if message.flow is not None:
        problem = flow_problem(message.flow)
        if problem is not None:  # the flow is not acted on: its task fails alone
            raise MessageRejected(problem, message.id)


def readable_time(timestamp: float) -> str:
    """A Unix time as UTC ISO 8601, for reasons a person reads; out of range, said so."""
    try:
        moment = datetime.fromtimestamp(timestamp, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return f"an impossible time ({timestamp:.6g} s from 1970)"
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _why(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply to decode"
    return str(exc) or type(exc).__name__


def _peek_id(body: bytes) -> str | None:
    """Best-effort task id from a message that failed validation, for its FAILURE result."""
    try:
        raw = msgspec.json.decode(body)
    except RecursionError:
        raw = {"id": _top_level_strings(body, (b'"id"',)).get(b'"id"')}
    except Exception:  # undecodable: no id to report
        return None
    task_id = raw.get("id") if isinstance(raw, dict) else None
    return _fit(task_id if isinstance(task_id, str) else None)


def _fit(name: str | None) -> str | None:
    """A task name or id fit to show: 1 to 200 characters."""
    return name if name and len(name) <= 200 else None


_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[][{}:,]')


def _top_level_strings(body: bytes, keys: tuple[bytes, ...]) -> dict[bytes, str]:
    """The top-level string values of `keys` (each a JSON-quoted name, b'"id"') in a JSON
    object, found by a flat scan of its strings and brackets (no recursion, whatever the
    depth): for bytes nested too deeply to decode, or not to be decoded at all."""
    depth, previous, key, found = 0, b"", b"", dict[bytes, str]()
    for match in _TOKENS.finditer(body):
        token = match.group()
        if token in (b"{", b"["):
            depth += 1
        elif token in (b"}", b"]"):
            depth -= 1
        elif depth == 1 and token.startswith(b'"'):
            if previous in (b"{", b","):
                key = token
            elif previous == b":" and key in keys and key not in found:
                with contextlib.suppress(Exception):
                    value = msgspec.json.decode(token)
                    if isinstance(value, str):
                        found[key] = value
                if len(found) == len(keys):
                    break
        previous = token
    return found
