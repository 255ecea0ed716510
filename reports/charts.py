"""Charts as inline SVG strings (no scripts, no fonts fetched: the HTML works offline and prints).

``line_chart``: daily values of several series, each with its 7-day moving average drawn over
the daily line, labelled at its right end; ``gap_chart``: daily values broken at the days
without data (a sensor's outage shows as a gap); ``paired_bars``: two shares side by side per
category (Figure 4). Colours are Okabe-Ito's (safe for colour-blind readers), and each line
also has its own dash style, so no reader needs colour to tell two lines apart. Every SVG has a
``<title>`` and a ``<desc>`` stating its key numbers (screen readers, and the text of a print).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from html import escape

import numpy as np
import numpy.typing as npt

__all__ = ["DASHES", "PALETTE", "Line", "gap_chart", "line_chart", "moving_average", "paired_bars"]

F64 = npt.NDArray[np.float64]
# Okabe & Ito (2008), "Color Universal Design": black first, then the seven hues.
PALETTE = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442")
DASHES = ("", "8,3", "2,2", "10,3,2,3", "4,4", "1,3", "12,4")
W, H = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 150, 24, 40
PW, PH = W - LEFT - RIGHT, H - TOP - BOTTOM  # the plot area


@dataclass(frozen=True)
class Line:
    """One series of a line chart."""

    label: str
    values: F64


def moving_average(values: F64, window: int = 7) -> F64:
    """Centred ``window``-day mean (the week around each day; shorter at both ends, so it does
    not lag a change by half a week)."""
    v = np.asarray(values, dtype=np.float64)
    c = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(len(v))
    lo = np.maximum(i - window // 2, 0)
    hi = np.minimum(i + window // 2 + 1, len(v))
    out: F64 = (c[hi] - c[lo]) / (hi - lo)
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


def _head(chart_id: str, title: str, desc: str, height: int) -> str:
    return (
        f'<svg id="{escape(chart_id)}-svg" class="chart" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img" '
        f'aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc">'
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>'
        f'<desc id="{escape(chart_id)}-desc">{escape(desc)}</desc>'
    )


def _spread(ys: list[float], gap: float, lo: float, hi: float) -> list[float]:
    """Label positions near ``ys`` (sorted order kept) at least ``gap`` apart, within lo..hi."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    out = list(ys)
    prev = lo - gap
    for i in order:
        out[i] = max(ys[i], prev + gap)
        prev = out[i]
    over = prev - hi
    if over > 0:
        for i in order:
            out[i] -= over
    return out


def _grid(
    days: Sequence[date], ticks: list[float], x: Callable[[float], float], y: Callable[[float], float]
) -> list[str]:
    """Horizontal lines at the value ticks, vertical ones on the 1st and 15th of each month."""
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    parts = []
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
    return parts


def _runs(values: F64) -> list[tuple[int, int]]:
    """(first, last) index of each run of days with data (a NaN ends a run)."""
    runs: list[tuple[int, int]] = []
    start = None
    for i, v in enumerate(values):
        if np.isnan(v):
            if start is not None:
                runs.append((start, i - 1))
            start = None
        elif start is None:
            start = i
    if start is not None:
        runs.append((start, len(values) - 1))
    return runs


def _frame(
    chart_id: str, title: str, desc: str, days: Sequence[date], top: float
) -> tuple[list[str], Callable[[float], float], Callable[[float], float]]:
    """A line chart's head, plot area and grid for values up to ``top``, with its x (day
    index) and y (value) scales."""
    n = max(len(days), 2)
    ymax, ticks = _nice(top)

    def x(i: float) -> float:
        return LEFT + PW * i / (n - 1)

    def y(v: float) -> float:
        return TOP + PH * (1 - v / ymax)

    parts = [
        _head(chart_id, title, desc or title, H),
        f'<rect x="{LEFT}" y="{TOP}" width="{PW}" height="{PH}" fill="#fff" stroke="#999"/>',
        *_grid(days, ticks, x, y),
    ]
    return parts, x, y


def _end_labels(lines: Sequence[Line], ends: list[float], stroke: str) -> list[str]:
    """Each line's label right of the plot, beside where the line ends (moved apart when
    two would overlap), with a swatch of its colour and dash."""
    parts = []
    for k, (ln, ly) in enumerate(zip(lines, _spread(ends, 13, TOP + 6, TOP + PH), strict=True)):
        color, dash = PALETTE[k % len(PALETTE)], DASHES[k % len(DASHES)]
        style = f' stroke-dasharray="{dash}"' if dash else ""
        lx = LEFT + PW + 4
        parts.append(
            f'<line x1="{lx}" x2="{lx + 18}" y1="{ly:.1f}" y2="{ly:.1f}" stroke="{color}" '
            f'stroke-width="{stroke}"{style}/>'
        )
        parts.append(f'<text x="{lx + 22}" y="{ly + 4:.1f}" font-size="11">{escape(_short(ln.label))}</text>')
    return parts


def line_chart(
    chart_id: str,
    title: str,
    days: Sequence[date],
    lines: Sequence[Line],
    marks: Sequence[tuple[date, int]] = (),
    desc: str = "",
) -> str:
    """An SVG line chart of daily values with 7-day moving averages, each line labelled at its
    end; ``marks`` draws a numbered vertical line on each date (the events the list numbers)."""
    top = max([float(np.max(ln.values)) for ln in lines if len(ln.values)] + [1.0])
    parts, x, y = _frame(chart_id, title, desc, days, top)
    index = {d: i for i, d in enumerate(days)}
    placed: list[float] = []  # label centres so far: a label too close moves right
    for m, number in marks:
        if m not in index:
            continue
        xm = x(index[m])
        cx = xm
        while any(abs(px - cx) < 16 for px in placed):
            cx += 16
        placed.append(cx)
        parts.append(
            f'<line class="mark" x1="{xm:.1f}" x2="{xm:.1f}" y1="{TOP}" y2="{TOP + PH}" '
            'stroke="#555" stroke-dasharray="2,3"/>'
        )
        cy = TOP - 10
        parts.append(
            f'<g class="mark-label"><circle cx="{cx:.1f}" cy="{cy}" r="7.5" fill="#fff" stroke="#555"/>'
            f'<text x="{cx:.1f}" y="{cy + 3.5}" text-anchor="middle" font-size="10" '
            f'font-weight="bold">{number}</text></g>'
        )
    ends = []
    for k, ln in enumerate(lines):
        color, dash = PALETTE[k % len(PALETTE)], DASHES[k % len(DASHES)]
        avg_v = moving_average(ln.values)
        daily = " ".join(f"{x(i):.1f},{y(float(v)):.1f}" for i, v in enumerate(ln.values))
        avg = " ".join(f"{x(i):.1f},{y(float(v)):.1f}" for i, v in enumerate(avg_v))
        style = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<polyline points="{daily}" fill="none" stroke="{color}" stroke-width="1" opacity="0.35"/>'
        )
        parts.append(f'<polyline points="{avg}" fill="none" stroke="{color}" stroke-width="2.4"{style}/>')
        ends.append(y(float(avg_v[-1])) if len(avg_v) else TOP + PH)
    parts += _end_labels(lines, ends, "2.4")
    parts.append(
        f'<text x="{LEFT + PW}" y="{H - 4}" text-anchor="end" font-size="10" fill="#555">'
        "thin: daily packets; thick: weekly average (centred 7-day mean); circled: event numbers</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts)


def gap_chart(chart_id: str, title: str, days: Sequence[date], lines: Sequence[Line], desc: str = "") -> str:
    """An SVG chart of daily values, one line per series, broken where a value is NaN (a day
    without data is a gap, never a 0 joined to its neighbours); a day with data alone between
    two gaps is a dot. Each line is labelled at its last day with data."""
    top = max([float(np.nanmax(ln.values)) for ln in lines if np.any(~np.isnan(ln.values))] + [1.0])
    parts, x, y = _frame(chart_id, title, desc, days, top)
    ends = []
    for k, ln in enumerate(lines):
        color, dash = PALETTE[k % len(PALETTE)], DASHES[k % len(DASHES)]
        style = f' stroke-dasharray="{dash}"' if dash else ""
        runs = _runs(ln.values)
        for first, last in runs:
            if first == last:
                v = float(ln.values[first])
                parts.append(f'<circle cx="{x(first):.1f}" cy="{y(v):.1f}" r="2.4" fill="{color}"/>')
                continue
            points = " ".join(f"{x(i):.1f},{y(float(ln.values[i])):.1f}" for i in range(first, last + 1))
            parts.append(
                f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"{style}/>'
            )
        ends.append(y(float(ln.values[runs[-1][1]])) if runs else TOP + PH)
    parts += _end_labels(lines, ends, "2")
    parts.append(
        f'<text x="{LEFT + PW}" y="{H - 4}" text-anchor="end" font-size="10" fill="#555">'
        "packets stored per day; a gap: no data that day</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts)


def _short(label: str, width: int = 20) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def paired_bars(
    chart_id: str,
    title: str,
    rows: Sequence[tuple[str, float, float]],
    labels: tuple[str, str],
    highlight: str | None = None,
    desc: str = "",
) -> str:
    """Horizontal bars, two per row (shares 0-1): e.g. Mirai sources vs all sources by region.
    Row names are drawn in full at the left (the name column grows to fit them)."""
    row_h, bar_h = 26, 10
    height = TOP + row_h * len(rows) + 40
    name_w = max([len(name) for name, _, _ in rows] + [10]) * 6.6 + 12
    x0 = name_w + 10
    pw = W - x0 - 60  # room for the value printed after the longest bar
    vmax = max([max(a, b) for _, a, b in rows] + [0.01])
    parts = [_head(chart_id, title, desc or title, height)]
    for i, (name, a, b) in enumerate(rows):
        y0 = TOP + i * row_h
        weight = "bold" if highlight and f"({highlight})" in name else "normal"
        parts.append(
            f'<text x="{name_w:.0f}" y="{y0 + 14}" text-anchor="end" font-size="11" font-weight="{weight}">'
            f"{escape(name)}</text>"
        )
        for k, v in enumerate((a, b)):
            w = pw * v / vmax
            yb = y0 + 2 + k * (bar_h + 1)
            fill = PALETTE[4] if k == 0 else PALETTE[1]
            parts.append(f'<rect x="{x0:.0f}" y="{yb}" width="{w:.1f}" height="{bar_h}" fill="{fill}"/>')
            parts.append(f'<text x="{x0 + 4 + w:.1f}" y="{yb + 9}" font-size="9">{v:.1%}</text>')
    ly = TOP + row_h * len(rows) + 20
    for k, label in enumerate(labels):
        fill = PALETTE[4] if k == 0 else PALETTE[1]
        parts.append(f'<rect x="{x0 + k * 220:.0f}" y="{ly - 9}" width="12" height="10" fill="{fill}"/>')
        parts.append(f'<text x="{x0 + 16 + k * 220:.0f}" y="{ly}" font-size="11">{escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
