"""The figures of one quarter as plain data: daily series, rankings, sources, episodes, health.

``reports.queries`` fills a ``QuarterData`` from ClickHouse; everything after that (events,
charts, HTML, JSON) is a pure function of it, so tests can build one by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import numpy.typing as npt

__all__ = [
    "AsRow",
    "Episode",
    "QuarterData",
    "Ranked",
    "SensorHealth",
    "Series",
    "ToolRow",
    "rank",
    "top_with_previous",
]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Series:
    """Daily packets of one key (a port, a region) over the quarter's days."""

    key: str  # '23/tcp', 'icmp', 'KR'
    label: str  # '23/TCP (telnet)', 'South Korea'
    daily: F64

    @property
    def total(self) -> int:
        """Packets over the quarter."""
        return int(self.daily.sum())


@dataclass(frozen=True)
class Ranked:
    """One row of a top-5 chart."""

    rank: int
    key: str
    label: str
    packets: int
    share: float
    previous_rank: int | None


@dataclass(frozen=True)
class Episode:
    """A DoS attack seen through its backscatter: one victim answering spoofed packets."""

    victim: str
    region: str
    start: datetime
    end: datetime
    packets: int
    protocols: str  # 'tcp', 'icmp' or 'tcp+icmp'

    @property
    def seconds(self) -> float:
        """Duration from the first to the last packet."""
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class AsRow:
    """One autonomous system's Mirai sources in one region: the operator to notify."""

    region: str
    asn: int
    as_org: str
    sources: int  # unique source addresses with the Mirai fingerprint
    packets: int


@dataclass(frozen=True)
class ToolRow:
    """A scanning tool over the quarter, by per-source verdict (not per-packet flag)."""

    tool: str
    sources: int
    packets: int


@dataclass(frozen=True)
class SensorHealth:
    """One sensor over the quarter: what it saw and what it lost."""

    sensor: str
    days_with_data: int
    packets: int  # packets stored for the quarter
    captured: int  # packets the sensor reports having seen (health records)
    dropped: int  # dropped by the kernel or out of the monitored prefixes
    monitored_addresses: int
    first_day: date | None
    last_day: date | None
    # Packets stored on each day of the quarter; NaN on a day without data (a gap, not a 0).
    daily: F64

    @property
    def per_address_day(self) -> float | None:
        """Packets per monitored address per day with data."""
        if not self.monitored_addresses or not self.days_with_data:
            return None
        return self.packets / self.monitored_addresses / self.days_with_data


@dataclass
class QuarterData:
    """Everything the report shows for one quarter (and the ranking of the quarter before)."""

    quarter: str
    previous: str
    sensor: str | None
    days: list[date]
    total: F64
    ports: dict[str, Series]
    regions: dict[str, Series]
    mirai: dict[str, Series]  # by region
    backscatter: F64
    previous_ports: dict[str, int] = field(default_factory=dict)  # quarter totals
    previous_regions: dict[str, int] = field(default_factory=dict)
    region_sources: dict[str, int] = field(default_factory=dict)  # unique sources, all packets
    mirai_sources: dict[str, int] = field(default_factory=dict)  # unique sources, Mirai packets
    region_names: dict[str, str] = field(default_factory=dict)
    episodes: list[Episode] = field(default_factory=list)
    health: list[SensorHealth] = field(default_factory=list)
    mirai_asns: list[AsRow] = field(default_factory=list)  # top ASes of the top Mirai regions
    tools: list[ToolRow] = field(default_factory=list)  # scanner tools by per-source verdict
    sensor_group: str | None = None  # the registry group reported on (sinks.registry); None: all
    # Sensors with packets on days the registry has no period for them (group 'unregistered'),
    # with those packets.
    unregistered: list[tuple[str, int]] = field(default_factory=list)

    @property
    def mirai_total(self) -> F64:
        """Daily Mirai packets, all regions."""
        if not self.mirai:
            return np.zeros(len(self.days))
        out: F64 = np.sum([s.daily for s in self.mirai.values()], axis=0)
        return out

    def region_label(self, code: str) -> str:
        """'South Korea (KR)', or the code alone when its name is unknown."""
        name = self.region_names.get(code, "")
        return f"{name} ({code})" if name and name != code else code


def rank(totals: dict[str, int]) -> list[str]:
    """Keys by total, largest first (ties by key, so rankings are reproducible)."""
    return sorted((k for k, v in totals.items() if v > 0), key=lambda k: (-totals[k], k))


def top_with_previous(
    series: dict[str, Series], previous: dict[str, int], grand: int, top: int = 5
) -> list[Ranked]:
    """The first ``top`` keys of the quarter with share of ``grand`` and previous-quarter rank.

    ``series`` must hold at least the quarter's top keys; ``previous`` every key's total.
    """
    totals = {k: s.total for k, s in series.items()}
    order = rank(totals)
    before = rank(previous)
    grand = max(grand, 1)
    return [
        Ranked(
            i + 1,
            k,
            series[k].label,
            totals[k],
            totals[k] / grand,
            before.index(k) + 1 if k in before else None,
        )
        for i, k in enumerate(order[:top])
    ]
