"""The telescope-health figure: packets stored per day by each sensor, its outages as gaps.

A sensor that stored nothing on a day has no row in the rollups for it; that day is NaN in
``SensorHealth.daily``, drawn as a gap and written as null in the JSON, so an outage never
reads as a quiet day.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from reports.charts import Line, gap_chart
from reports.report import Figure
from reports.series import QuarterData

__all__ = ["HEALTH_FIGURE", "daily_or_null", "days_without_data", "health_figure", "spans"]

F64 = npt.NDArray[np.float64]
HEALTH_FIGURE = "fig-health"


def days_without_data(days: Sequence[date], daily: F64) -> list[date]:
    """The days of ``days`` whose value is NaN (no data stored)."""
    return [d for d, v in zip(days, daily, strict=True) if np.isnan(v)]


def daily_or_null(daily: F64) -> list[int | None]:
    """Daily values for the JSON: an int, or None on a day without data."""
    return [None if np.isnan(v) else int(v) for v in daily]


def spans(days: Sequence[date]) -> str:
    """Sorted days as runs: 'Apr 5, Apr 10 to Apr 12' (a month-long outage stays short)."""
    runs: list[list[date]] = []
    for d in days:
        if runs and d - runs[-1][1] == timedelta(days=1):
            runs[-1][1] = d
        else:
            runs.append([d, d])
    return ", ".join(f"{a:%b} {a.day}" if a == b else f"{a:%b} {a.day} to {b:%b} {b.day}" for a, b in runs)


def _desc(data: QuarterData) -> str:
    parts = []
    for h in data.health:
        missing = days_without_data(data.days, h.daily)
        gaps = f"no data on {spans(missing)}" if missing else "no day without data"
        parts.append(
            f"{h.sensor}: {h.packets:,} packets stored on {len(data.days) - len(missing)} of "
            f"{len(data.days)} days; {gaps}"
        )
    return "; ".join(parts) + "."


def health_figure(data: QuarterData) -> Figure | None:
    """Packets stored per day, one line per sensor (None when no sensor stored anything)."""
    if not data.health:
        return None
    title = "Daily packets stored per sensor"
    lines = [Line(h.sensor, h.daily) for h in data.health]
    dates = [d.isoformat() for d in data.days]
    desc = _desc(data)
    json: dict[str, Any] = {
        "desc": desc,
        "days": dates,
        "series": [
            {
                "key": h.sensor,
                "label": h.sensor,
                "packets": h.packets,
                "daily": daily_or_null(h.daily),
                "days_without_data": [d.isoformat() for d in days_without_data(data.days, h.daily)],
            }
            for h in data.health
        ],
    }
    svg = gap_chart(HEALTH_FIGURE, title, data.days, lines, desc)
    return Figure(HEALTH_FIGURE, title, svg, json)
