"""SVG charts as the numbers an SVG element takes (points, heights): drawn here, so the
template's first paint and the stream's updates draw them the same way, and the page needs
no chart library."""

from __future__ import annotations

WIDTH = 300.0  # the chart's viewBox
HEIGHT = 80.0


def polyline(values: list[int], top: int) -> str:
    """`values` as an SVG polyline's points, the oldest at the left; `top` at the top edge."""
    if not values:
        return ""
    step = WIDTH / max(1, len(values) - 1)
    scale = HEIGHT / max(1, top)
    return " ".join(f"{i * step:.1f},{HEIGHT - v * scale:.1f}" for i, v in enumerate(values))


def percent(part: int, whole: int) -> str:
    """`part` of `whole` as an SVG width, '0%' for an empty whole, at most '100%'."""
    if whole <= 0:
        return "0%"
    return f"{min(100.0, 100.0 * part / whole):.1f}%"
