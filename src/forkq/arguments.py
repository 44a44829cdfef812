"""A task's arguments against its signature: checked when sent, converted when received.

Arguments travel as JSON, which keeps numbers, strings, lists and objects but turns a
datetime, UUID, Decimal or bytes into a string and a dataclass into an object. When a task's
parameters are annotated, the worker converts each argument back to its parameter's type
(msgspec's rules: an ISO 8601 string to a datetime, a base64 string to bytes, an object to a
dataclass, Struct or TypedDict, ...) and a value that does not fit is dead-lettered with the
reason, before the task runs. On the sending side, `typing=True` (the default) checks that
the arguments bind to the signature, and an argument JSON cannot hold is named in the error.

Both are worked out once per task (`Task.signature_check`, `Task.conversion`) and cost an
unannotated task nothing when received. A worker works the conversions out in its master,
before it forks (`prepare_conversions`), so that its children share them.
"""

from __future__ import annotations

import inspect
import logging
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from forkq.envelope import Message
from forkq.exceptions import ArgumentError, MessageRejected, Rejection

if TYPE_CHECKING:
    from forkq.task import Task

log = logging.getLogger("forkq.worker")

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_UNCHECKED = (Any, object, inspect.Parameter.empty)
_encoder = msgspec.json.Encoder()


def task_parameters(fn: Callable[..., Any], bind: bool) -> inspect.Signature | None:
    """The signature callers see: without the task itself for a bound task; None when
    Python cannot tell (some C functions)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    if bind:
        signature = signature.replace(parameters=list(signature.parameters.values())[1:])
    return signature


class SignatureCheck:
    """Whether a call's arguments bind to the task's signature; the common shapes (only
    positional arguments, in the accepted number) are settled by two comparisons."""

    def __init__(self, task_name: str, signature: inspect.Signature) -> None:
        params = list(signature.parameters.values())
        positional = [p for p in params if p.kind in _POSITIONAL]
        self.task_name = task_name
        self.signature = signature
        self.names = [p.name for p in positional]
        self.fewest = sum(1 for p in positional if p.default is p.empty)
        varargs = any(p.kind is p.VAR_POSITIONAL for p in params)
        self.most = 1 << 30 if varargs else len(positional)
        self.keywords_required = any(
            p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in params
        )

    def check(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        if not kwargs and not self.keywords_required and self.fewest <= len(args) <= self.most:
            return
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ArgumentError(f"task {self.task_name}: {exc}") from None

    def unencodable(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> ArgumentError | None:
        """The error naming the first argument JSON cannot hold, if any (an error path)."""
        labelled = [
            (f"{self.names[i]!r} (position {i})" if i < len(self.names) else f"position {i}", v)
            for i, v in enumerate(args)
        ]
        labelled += [(repr(name), v) for name, v in kwargs.items()]
        for label, value in labelled:
            try:
                _encoder.encode(value)
            except (TypeError, ValueError, RecursionError) as exc:
                return ArgumentError(
                    f"task {self.task_name}: argument {label} cannot be sent as JSON: {exc}"
                )
        return None


class Conversion:
    """The annotated parameters of a task and the types their arguments convert to."""

    def __init__(
        self,
        task_name: str,
        positional: list[tuple[int, str, Any]],
        first_extra: int,
        extra: Any,
        keywords: dict[str, Any],
        extra_keywords: Any,
    ) -> None:
        self.task_name = task_name
        self.positional = positional  # (index, name, type) of each annotated positional
        self.first_extra = first_extra  # where *args begins
        self.extra = extra  # the type of each *args item, or None
        self.keywords = keywords  # name -> type, for arguments given by keyword
        self.extra_keywords = extra_keywords  # the type of each **kwargs value, or None

    def apply(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        out = list(args)
        for index, name, kind in self.positional:
            if index >= len(out):
                break
            out[index] = self._one(name, out[index], kind)
        if self.extra is not None:
            for index in range(self.first_extra, len(out)):
                out[index] = self._one(f"*args[{index - self.first_extra}]", out[index], self.extra)
        if not kwargs:
            return out, kwargs
        converted = {}
        for name, value in kwargs.items():
            kind = self.keywords.get(name, self.extra_keywords)
            converted[name] = value if kind is None else self._one(name, value, kind)
        return out, converted

    def _one(self, name: str, value: Any, kind: Any) -> Any:
        if type(value) is kind:  # an int for `int`, a str for `str`: nothing to convert
            return value
        try:
            return msgspec.convert(value, kind)
        except Exception as exc:  # a ValidationError, or whatever a type's own check raised
            raise ArgumentError(f"task {self.task_name}: argument {name!r}: {exc}") from None


def conversion_for(
    task_name: str, fn: Callable[..., Any], signature: inspect.Signature | None
) -> Conversion | None:
    """The conversion of a task's arguments; None when no parameter has a type to convert
    to (or the annotations cannot be resolved, which is logged once)."""
    if signature is None:
        return None
    hints = _hints(task_name, fn)
    kinds = {name: _convertible(hints.get(name)) for name in signature.parameters}
    if all(kind is None for kind in kinds.values()):
        return None
    positional, keywords, first_extra = [], {}, 0
    extra = extra_keywords = None
    for param in signature.parameters.values():
        kind = kinds[param.name]
        if param.kind in _POSITIONAL:
            first_extra += 1
            if kind is not None:
                positional.append((first_extra - 1, param.name, kind))
        if param.kind is param.VAR_POSITIONAL:
            extra = kind
        elif param.kind is param.VAR_KEYWORD:
            extra_keywords = kind
        elif kind is not None and param.kind is not param.POSITIONAL_ONLY:
            keywords[param.name] = kind
    return Conversion(task_name, positional, first_extra, extra, keywords, extra_keywords)


def _hints(task_name: str, fn: Callable[..., Any]) -> dict[str, Any]:
    """The annotations, resolved; one that cannot be (a name imported only under
    TYPE_CHECKING, a class local to a function) is left out, which is logged."""
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:  # resolve them one by one, to keep those that can be
        pass
    hints = {}
    scope = getattr(inspect.unwrap(fn), "__globals__", {})  # a callable object has none
    for name, raw in getattr(fn, "__annotations__", {}).items():
        one = types.SimpleNamespace(__annotations__={name: raw}, __globals__=scope)
        try:
            hints.update(typing.get_type_hints(one, include_extras=True))
        except Exception as exc:
            log.warning("task %s: argument %r not converted: %s", task_name, name, exc)
    return hints


def _convertible(hint: Any) -> Any:
    """The annotation, if msgspec can convert to it and it says more than "anything"."""
    if hint is None or any(hint is unchecked for unchecked in _UNCHECKED):
        return None
    try:
        msgspec.json.Decoder(hint)  # validates the type (and caches its plan in msgspec)
    except Exception:  # a type msgspec does not support: the value is passed as it came
        return None
    return hint


def prepare_conversions(tasks: Iterable[Task[..., Any]]) -> None:
    """Work out each task's conversion now: a worker's master does, before it forks, so that
    its children share them copy-on-write rather than each working one out on the task's first
    message. An annotation that cannot be resolved is logged, and its argument passed as it
    comes, as in a child."""
    for task in tasks:
        task.conversion  # noqa: B018  # the cached property, filled in


def convert(
    task: Task[..., Any], args: list[Any], kwargs: dict[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """The arguments as the task receives them; `ArgumentError` when one does not fit."""
    conversion = task.conversion
    return (args, kwargs) if conversion is None else conversion.apply(args, kwargs)


def convert_message(task: Task[..., Any], message: Message) -> Message:
    """The message with its arguments converted; a mismatch rejects it with the reason."""
    conversion = task.conversion
    if conversion is None:
        return message
    try:
        args, kwargs = conversion.apply(message.args, message.kwargs)
    except ArgumentError as exc:
        raise MessageRejected(str(exc), message.id, kind=Rejection.ARGUMENTS) from None
    return msgspec.structs.replace(message, args=args, kwargs=kwargs)
