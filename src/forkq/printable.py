"""Text that any writer of a broker or store chooses, made safe for a terminal and plain in a
page: every character that is not printable (ESC above all, which would reach the terminal as
a control sequence) is shown as its Python escape (`\\x1b`), so the text stands for itself."""

from __future__ import annotations

from typing import Any


def printable(text: str) -> str:
    """`text` with each unprintable character written as its escape."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def printable_values(value: Any) -> Any:
    """`value` (a reply decoded from JSON or MessagePack) with every string in it, keys
    included, made printable."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable_values(k): printable_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable_values(item) for item in value]
    return value
