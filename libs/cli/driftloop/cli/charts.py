"""Line charts as inline SVG, drawn in Python: no script and nothing fetched, so a page
holding them opens offline. Every text that reaches the SVG is escaped here."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

WIDTH, HEIGHT = 880, 220
LEFT, RIGHT, TOP, BOTTOM = 60, 96, 12, 26
# Points are drawn as dots (each with a hover title) up to this many per series.
MAX_DOTS = 400


@dataclass(frozen=True)
class Point:
    x: float  # seconds since the epoch
    y: float  # NaN: no value (the line breaks)
    flagged: bool = False  # drawn as a ringed dot
    note: str = ""  # the hover text


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    points: Sequence[Point]
    dashed: bool = False


@dataclass(frozen=True)
class Rule:
    """A horizontal line at a threshold."""

    y: float
    label: str
    color: str


@dataclass(frozen=True)
class Marker:
    """A vertical line at an event."""

    x: float
    label: str
    color: str


@dataclass(frozen=True)
class Axes:
    x_range: tuple[float, float]
    x_format: Callable[[float], str]
    y_format: Callable[[float], str] = field(default=lambda y: f"{y:g}")
    y_max: float | None = None  # None: from the data (and the rules)


def nice_step(span: float, ticks: int) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about `ticks` intervals."""
    raw = span / max(ticks, 1)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def _y_top(series: Sequence[Series], rules: Sequence[Rule], axes: Axes) -> float:
    if axes.y_max is not None:
        return axes.y_max
    values = [p.y for s in series for p in s.points if math.isfinite(p.y)]
    values += [rule.y for rule in rules]
    top = max(values, default=0.0)
    return top * 1.1 if top > 0 else 1.0


def line_chart(
    series: Sequence[Series],
    axes: Axes,
    *,
    label: str,
    rules: Sequence[Rule] = (),
    markers: Sequence[Marker] = (),
) -> str:
    """An SVG line chart of `series` over `axes.x_range`, from 0 up, with threshold rules
    and event markers; `label` names it for screen readers."""
    x0, x1 = axes.x_range
    if x1 <= x0:
        x0, x1 = x0 - 30, x0 + 30
    y_top = _y_top(series, rules, axes)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return TOP + plot_h - min(max(y, 0.0), y_top) / y_top * plot_h

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" class="plot"/>',
    ]
    step = nice_step(y_top, 4)
    tick = 0.0
    while tick <= y_top + 1e-12:
        y = sy(tick)
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
        )
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(axes.y_format(tick))}</text>"
        )
        tick += step
    for i in range(5):
        x = x0 + (x1 - x0) * i / 4
        anchor = ("start", "middle", "middle", "middle", "end")[i]
        parts.append(
            f'<text x="{sx(x):.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}">'
            f"{escape(axes.x_format(x))}</text>"
        )
    for rule in rules:
        y = sy(rule.y)
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{escape(rule.color)}" class="rule"/>'
            f'<text x="{LEFT + plot_w + 4}" y="{y + 4:.1f}" fill="{escape(rule.color)}">'
            f"{escape(rule.label)}</text>"
        )
    for marker in markers:
        if x0 <= marker.x <= x1:
            x = sx(marker.x)
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + plot_h}" '
                f'stroke="{escape(marker.color)}" class="marker"><title>{escape(marker.label)}'
                "</title></line>"
            )
    for one in series:
        parts.extend(_series(one, sx, sy))
    parts.append("</svg>")
    return "".join(parts)


def _series(one: Series, sx: Callable[[float], float], sy: Callable[[float], float]) -> list[str]:
    color = escape(one.color)
    parts = []
    segment: list[str] = []
    dash = ' stroke-dasharray="6 4"' if one.dashed else ""
    for point in [*one.points, Point(math.nan, math.nan)]:
        if math.isfinite(point.y) and math.isfinite(point.x):
            segment.append(f"{sx(point.x):.1f},{sy(point.y):.1f}")
            continue
        if len(segment) > 1:
            parts.append(
                f'<polyline points="{" ".join(segment)}" stroke="{color}"{dash} class="line"/>'
            )
        segment = []
    finite = [p for p in one.points if math.isfinite(p.y) and math.isfinite(p.x)]
    dotted = finite if len(finite) <= MAX_DOTS else [p for p in finite if p.flagged]
    for point in dotted:
        ring = ' class="flag"' if point.flagged else ""
        note = escape(f"{one.name}: {point.note}" if point.note else one.name)
        radius = 4 if point.flagged else 2.5
        parts.append(
            f'<circle cx="{sx(point.x):.1f}" cy="{sy(point.y):.1f}" r="{radius}" '
            f'fill="{color}"{ring}><title>{note}</title></circle>'
        )
    return parts
