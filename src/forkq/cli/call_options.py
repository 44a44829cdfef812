"""Values of `forkq call` options: moments in ISO 8601, delays in seconds, JSON arguments."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import click

ISO_EXAMPLE = "2026-05-01T10:00:00+02:00 or 2026-05-01T08:00:00Z"


def moment(_ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """`--eta`: an ISO 8601 time with its UTC offset."""
    return None if value is None else _iso(value)


def moment_or_seconds(
    _ctx: click.Context, param: click.Parameter, value: str | None
) -> datetime | float | None:
    """`--expires`: seconds from now, or an ISO 8601 time with its UTC offset."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return _iso(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise click.BadParameter(f"{value!r}: give seconds from 0, or an ISO 8601 time")
    return seconds


def json_array(_ctx: click.Context, param: click.Parameter, value: str | None) -> list[Any] | None:
    """`--args`: positional arguments as a JSON array."""
    if value is None:
        return None
    decoded = _json(value)
    if not isinstance(decoded, list):
        raise click.BadParameter("must be a JSON array, e.g. '[2, 3]'")
    return decoded


def json_object(_ctx: click.Context, param: click.Parameter, value: str) -> dict[str, Any]:
    """`--kwargs`: keyword arguments as a JSON object."""
    decoded = _json(value)
    if not isinstance(decoded, dict):
        raise click.BadParameter("must be a JSON object, e.g. '{\"x\": 2}'")
    return decoded


def _json(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None


def _iso(value: str) -> datetime:
    text = value.strip()
    if text[-1:] in ("Z", "z"):  # Python 3.10's fromisoformat does not read Z
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{value!r}: give an ISO 8601 time, e.g. {ISO_EXAMPLE}") from None
    if parsed.tzinfo is None:
        raise click.BadParameter(f"{value!r} has no UTC offset; add one, e.g. {ISO_EXAMPLE}")
    return parsed
