"""A call's arguments as the short text a task event carries (`TaskEvent.args`): like the
call's own source (`1, 'a', key=2`), each value abbreviated by reprlib and the whole cut at
`ARGS_MAX` characters, so an event stays small and making it costs the same whatever was
passed."""

from __future__ import annotations

import reprlib
from collections.abc import Mapping, Sequence
from typing import Any

ARGS_MAX = 1024  # characters
SHOWN = 20  # positional and keyword arguments shown, each

_repr = reprlib.Repr()
_repr.maxlevel = 3
_repr.maxstring = _repr.maxother = 200
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = SHOWN


def call_text(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    parts = [_repr.repr(value) for value in args[:SHOWN]]
    if len(args) > SHOWN:
        parts.append("...")
    parts += [f"{key}={_repr.repr(value)}" for key, value in list(kwargs.items())[:SHOWN]]
    if len(kwargs) > SHOWN:
        parts.append("...")
    text = ", ".join(parts)
    return text if len(text) <= ARGS_MAX else text[: ARGS_MAX - 3] + "..."
