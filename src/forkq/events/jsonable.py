"""An event as one JSON object: every field (defaults too, so a reader need not know them),
its `type` (task or worker), enums as their values, and the offset it was read at."""

from __future__ import annotations

from typing import Any

import msgspec

from forkq.events.values import Event


def event_json(event: Event, offset: str) -> dict[str, Any]:
    found: dict[str, Any] = {"offset": offset, "type": type(event).__struct_config__.tag}
    found.update(_fields(event))
    return found


def _fields(value: msgspec.Struct) -> dict[str, Any]:
    return {name: _plain(getattr(value, name)) for name in type(value).__struct_fields__}


def _plain(value: Any) -> Any:
    if isinstance(value, msgspec.Struct):
        return _fields(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return msgspec.to_builtins(value)
