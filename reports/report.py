"""The built report as data: what the HTML and the JSON show (``reports.build`` makes it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from reports.events import Event, EventParams
from reports.series import QuarterData, Ranked, rank

__all__ = ["Figure", "Report", "ReportPaths", "daily_by_key", "series_labels", "shares"]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ReportPaths:
    """Files a report run wrote."""

    html: Path
    json: Path
    tables: str = ""  # Chart 1 and Chart 2 as text (top5_tables), for the terminal


@dataclass(frozen=True)
class Figure:
    """One chart: its anchor id, caption and inline SVG, and the figures behind it."""

    id: str
    title: str
    svg: str
    data: dict[str, Any]


@dataclass
class Report:
    """Everything the HTML and the JSON show."""

    data: QuarterData
    focus_region: str
    top_ports: list[Ranked]
    top_regions: list[Ranked]
    figures: dict[str, Figure]
    events: list[Event]
    mirai_ranks: dict[str, int | None]  # focus region's rank by Mirai sources and by all sources
    params: EventParams = field(default_factory=EventParams)
    generated: datetime = field(default_factory=lambda: datetime.now(UTC))
    notes: str = ""  # the analyst's own sections, as safe HTML (reports.notes)

    @property
    def main_events(self) -> list[Event]:
        """The events of the main section, by rank."""
        return [e for e in self.events if e.rank is not None and e.rank <= self.params.main_events]

    @property
    def appendix_events(self) -> list[Event]:
        """The ranked events after the main section."""
        return [e for e in self.events if e.rank is None or e.rank > self.params.main_events]


def daily_by_key(data: QuarterData) -> dict[str, F64]:
    """Every watched series by the key events name it with (``Event.series``)."""
    out: dict[str, F64] = {f"port:{k}": s.daily for k, s in data.ports.items()}
    out.update({f"region:{k}": s.daily for k, s in data.regions.items()})
    out.update({f"mirai:{k}": s.daily for k, s in data.mirai.items()})
    out["mirai"] = data.mirai_total
    out["backscatter"] = data.backscatter
    return out


def series_labels(data: QuarterData) -> dict[str, str]:
    """How the JSON labels each series of ``daily_by_key``."""
    out = {f"port:{k}": s.label for k, s in data.ports.items()}
    out.update({f"region:{k}": s.label for k, s in data.regions.items()})
    out.update({f"mirai:{k}": f"Mirai packets from {s.label}" for k, s in data.mirai.items()})
    out["mirai"] = "Mirai packets"
    out["backscatter"] = "Backscatter packets"
    return out


def shares(sources: dict[str, int]) -> tuple[dict[str, float], list[str]]:
    """Each key's share of the total, and the keys ranked."""
    total = sum(sources.values()) or 1
    return {k: v / total for k, v in sources.items()}, rank(sources)
