"""Charts as inline SVG strings (no scripts, no fonts fetched: the HTML works offline and prints).

``line_chart``: daily values of several series, each with its 7-day moving average drawn over
the daily line; ``paired_bars``: two shares side by side per category (Figure 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from html import escape

import numpy as np
import numpy.typing as npt

__all__ = ["PALETTE", "Line", "line_chart", "moving_average", "paired_bars"]

F64 = npt.NDArray[np.float64]
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")
W, H = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 64


@dataclass(frozen=True)
class Line:
    """One series of a line chart."""

    label: str
    values: F64


def moving_average(values: F64, window: int = 7) -> F64:
    """Trailing ``window``-day mean (shorter at the start, so it starts on day one)."""
    v = np.asarray(values, dtype=np.float64)
    c = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(1, len(v) + 1)
    lo = np.maximum(i - window, 0)
    out: F64 = (c[i] - c[lo]) / (i - lo)
    return out


def _nice(top: float) -> tuple[float, list[float]]:
    if top <= 0:
        return 1.0, [0.0, 1.0]
    step = 10 ** np.floor(np.log10(top / 4))
    for m in (1, 2, 2.5, 5, 10):
        if top / (m * step) <= 5:
            step *= m
            break
    ticks = list(np.arange(0, top + step * 0.999, step))
    return float(ticks[-1]) if ticks[-1] >= top else float(ticks[-1] + step), [float(t) for t in ticks]


def _fmt(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def line_chart(
    chart_id: str, title: str, days: Sequence[date], lines: Sequence[Line], marks: Sequence[date] = ()
) -> str:
    """An SVG line chart of daily values with 7-day moving averages; ``marks`` draws a dotted
    vertical line on each date (the events the text names)."""
    n = max(len(days), 2)
    top = max([float(np.max(ln.values)) for ln in lines if len(ln.values)] + [1.0])
    ymax, ticks = _nice(top)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(i: float) -> float:
        return LEFT + pw * i / (n - 1)

    def y(v: float) -> float:
        return TOP + ph * (1 - v / ymax)

    parts = [
        f'<svg id="{escape(chart_id)}-svg" class="chart" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{escape(title)}">',
        f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>',
    ]
    for t in ticks:
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#e5e5e5"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{y(t) + 4:.1f}" text-anchor="end" font-size="11">{_fmt(t)}</text>'
        )
    for i, d in enumerate(days):
        if d.day in (1, 15):
            parts.append(f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{TOP}" y2="{TOP + ph}" stroke="#eee"/>')
            parts.append(
                f'<text x="{x(i):.1f}" y="{TOP + ph + 14}" text-anchor="middle" font-size="11">'
                f"{d:%b} {d.day}</text>"
            )
    index = {d: i for i, d in enumerate(days)}
    for m in marks:
        if m in index:
            xm = x(index[m])
            parts.append(
                f'<line class="mark" x1="{xm:.1f}" x2="{xm:.1f}" y1="{TOP}" y2="{TOP + ph}" '
                'stroke="#555" stroke-dasharray="2,3"/>'
            )
    for k, ln in enumerate(lines):
        color = PALETTE[k % len(PALETTE)]
        daily = " ".join(f"{x(i):.1f},{y(float(v)):.1f}" for i, v in enumerate(ln.values))
        avg = " ".join(f"{x(i):.1f},{y(float(v)):.1f}" for i, v in enumerate(moving_average(ln.values)))
        parts.append(
            f'<polyline points="{daily}" fill="none" stroke="{color}" stroke-width="1" opacity="0.45"/>'
        )
        parts.append(f'<polyline points="{avg}" fill="none" stroke="{color}" stroke-width="2.2"/>')
        lx, ly = LEFT + (k % 4) * 175, TOP + ph + 32 + (k // 4) * 16
        parts.append(f'<rect x="{lx}" y="{ly - 9}" width="14" height="4" fill="{color}"/>')
        parts.append(f'<text x="{lx + 18}" y="{ly - 4}" font-size="11">{escape(ln.label)}</text>')
    parts.append(
        f'<text x="{LEFT + pw}" y="{H - 4}" text-anchor="end" font-size="10" fill="#666">'
        "thin: daily packets, thick: 7-day moving average</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts)


def paired_bars(
    chart_id: str,
    title: str,
    rows: Sequence[tuple[str, float, float]],
    labels: tuple[str, str],
    highlight: str | None = None,
) -> str:
    """Horizontal bars, two per row (shares 0-1): e.g. Mirai sources vs all sources by region."""
    row_h, bar_h = 26, 10
    height = TOP + row_h * len(rows) + 40
    pw = W - 200 - RIGHT
    vmax = max([max(a, b) for _, a, b in rows] + [0.01])
    parts = [
        f'<svg id="{escape(chart_id)}-svg" class="chart" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img" aria-label="{escape(title)}">'
    ]
    for i, (name, a, b) in enumerate(rows):
        y0 = TOP + i * row_h
        weight = "bold" if highlight and name.endswith(f"({highlight})") else "normal"
        parts.append(
            f'<text x="190" y="{y0 + 14}" text-anchor="end" font-size="11" font-weight="{weight}">'
            f"{escape(name)}</text>"
        )
        for k, v in enumerate((a, b)):
            w = pw * v / vmax
            yb = y0 + 2 + k * (bar_h + 1)
            parts.append(f'<rect x="200" y="{yb}" width="{w:.1f}" height="{bar_h}" fill="{PALETTE[k]}"/>')
            parts.append(f'<text x="{204 + w:.1f}" y="{yb + 9}" font-size="9">{v:.1%}</text>')
    ly = TOP + row_h * len(rows) + 20
    for k, label in enumerate(labels):
        parts.append(f'<rect x="{200 + k * 220}" y="{ly - 9}" width="12" height="10" fill="{PALETTE[k]}"/>')
        parts.append(f'<text x="{216 + k * 220}" y="{ly}" font-size="11">{escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
