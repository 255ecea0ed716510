"""Ground truth of a simulated quarter: what was planted, counted from the packets generated.

Every figure is computed from the generated columns and the generator's own labels (region
and sending tool of each packet), day by day as the days are produced, so it is exact: a
pipeline that reads the same packets must find the same counts, sources, rankings and events.

JSON layout (``GroundTruth.write``, ``Simulation.write_ground_truth``)::

    format, quarter, flat, seed, packets_per_day, sensor_id, prefixes, geo_db{path, build_epoch},
    first_day, last_day, days, complete,
    daily[]: {date, packets, by_port{'23/tcp'.., 'other'}, by_region{ISO: n},
              by_fingerprint{mirai, zmap, masscan, nmap, backscatter, none},
              mirai_by_region{ISO: n}, unique_sources_by_region{ISO: n}},
    totals: {packets, by_port, top_ports[[key, n]], by_region, by_fingerprint,
             mirai_by_region, unique_sources, unique_sources_by_region},
    top5: {ports[], regions[]: {rank, key, packets, share, previous_rank},
           previous_quarter, previous_rank_source ('model' | 'simulated'), min_margin{ports, regions}},
    sources: {zmap[], masscan[], nmap[]}  (dotted quads),
    backscatter: {episodes, victims[]: {victim, region, packets, episodes[]: {protocol, response,
                  service_port, source, start, end, seconds, packets}}},
    ipv6: {packets, backscatter_packets, scan: {source, port, packets}}  (planted at a sensor
          with an IPv6 prefix, beside the modelled quarter: not in daily or totals; its
          episodes are among backscatter's, victims in IPv6 notation, region 'ZZ')
    events[]: {kind, subject, start, description}
"""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from producers.sim.ipv6 import SCAN_PORT, SCANNER, Ipv6Day
from producers.sim.model import FINGERPRINTS, KINDS, REGIONS, TCP, TRACKED_PORTS, UDP, Event, port_key
from producers.sim.packets import Episode

__all__ = ["DayTraffic", "GroundTruth", "ranks_with_previous"]

Array = npt.NDArray[Any]
FORMAT = "darkscope.simulation.ground_truth/1"
FINGERPRINT_NAMES = ("mirai", "zmap", "masscan", "nmap", "backscatter", "none")


@dataclass(frozen=True)
class DayTraffic:
    """One generated day: columns in time order, and the region / kind index of each row."""

    day: date
    columns: dict[str, Array]
    region: Array  # index into producers.sim.model.REGIONS
    kind: Array  # index into producers.sim.model.KINDS
    episodes: list[Episode]


def _ip(value: int) -> str:
    if value > 0xFFFFFFFF:  # an IPv6 victim or reporter (producers.sim.ipv6)
        return str(ipaddress.IPv6Address(value))
    return f"{value >> 24 & 255}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


def _iso_ns(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat(timespec="milliseconds")


def _port_counts(cols: dict[str, Array]) -> Counter[str]:
    proto = cols["protocol"].astype(np.int64)
    ported = (proto == TCP) | (proto == UDP)
    code = (proto << 16) | np.where(ported, cols["dport"], 0)
    values, counts = np.unique(code, return_counts=True)
    out: Counter[str] = Counter()
    for v, c in zip(values.tolist(), counts.tolist(), strict=True):
        out[port_key(v >> 16, v & 0xFFFF)] += c
    return out


def _named(counts: Array, names: Sequence[str]) -> dict[str, int]:
    return {names[i]: int(c) for i, c in enumerate(counts) if c}


def ranks_with_previous(
    ranking: list[tuple[str, int]], previous: list[str] | None, top: int = 5
) -> list[dict[str, Any]]:
    """The first ``top`` entries of a ranking with their share and previous-quarter rank."""
    total = sum(c for _, c in ranking) or 1
    rows = []
    for i, (key, count) in enumerate(ranking[:top]):
        prev = previous.index(key) + 1 if previous and key in previous else None
        rows.append(
            {
                "rank": i + 1,
                "key": key,
                "packets": count,
                "share": round(count / total, 5),
                "previous_rank": prev,
            }
        )
    return rows


def _min_margin(ranking: list[tuple[str, int]], top: int = 5) -> float | None:
    counts = [c for _, c in ranking[: top + 1]]
    if len(counts) < 2 or min(counts) == 0:
        return None
    return round(min(a / b - 1.0 for a, b in pairwise(counts)), 4)


class GroundTruth:
    """Accumulates per-day truth as days are generated; ``to_dict`` gives the JSON layout."""

    def __init__(
        self,
        quarter: str,
        days: list[date],
        meta: dict[str, Any],
        events: list[Event],
        previous: tuple[str, list[str], list[str], str] | None,
    ) -> None:
        self.quarter = quarter
        self.days = days
        self.meta = meta
        self.events = [e for e in events if days and days[0] <= e.start <= days[-1]]
        self.previous = previous  # (quarter, port ranking, region ranking, source)
        self.daily: dict[int, dict[str, Any]] = {}
        self.ports: Counter[str] = Counter()
        self.region_totals = np.zeros(len(REGIONS), np.int64)
        self.mirai_totals = np.zeros(len(REGIONS), np.int64)
        self.kind_totals = np.zeros(len(KINDS), np.int64)
        self.source_keys: list[Array] = []
        self.scanner_sources: dict[str, set[int]] = {"zmap": set(), "masscan": set(), "nmap": set()}
        self.episodes: list[Episode] = []
        self.ipv6 = {"packets": 0, "backscatter_packets": 0, "scan_packets": 0}
        self._ipv6_days: set[int] = set()

    @property
    def complete(self) -> bool:
        """True once every simulated day has been added."""
        return len(self.daily) == len(self.days)

    def add_ipv6_day(self, index: int, planted: Ipv6Day) -> None:
        """Count one day of planted IPv6 packets (a day already counted is ignored)."""
        if index in self._ipv6_days:
            return
        self._ipv6_days.add(index)
        self.episodes.extend(planted.episodes)
        self.ipv6["packets"] += len(planted.columns["ts"])
        self.ipv6["backscatter_packets"] += sum(ep.packets for ep in planted.episodes)
        self.ipv6["scan_packets"] += planted.scan_packets

    def add_day(self, index: int, traffic: DayTraffic) -> None:
        """Count one generated day (a day already counted is ignored)."""
        if index in self.daily:
            return
        cols, region, kind = traffic.columns, traffic.region, traffic.kind
        ports = _port_counts(cols)
        self.ports.update(ports)
        by_region = np.bincount(region, minlength=len(REGIONS))
        by_kind = np.bincount(kind, minlength=len(KINDS))
        mirai = np.bincount(region[kind == KINDS.index("mirai")], minlength=len(REGIONS))
        keys = np.unique((region.astype(np.uint64) << np.uint64(32)) | cols["src"].astype(np.uint64))
        self.source_keys.append(keys)
        uniq = np.bincount((keys >> np.uint64(32)).astype(np.int64), minlength=len(REGIONS))
        for name in self.scanner_sources:
            self.scanner_sources[name].update(np.unique(cols["src"][kind == KINDS.index(name)]).tolist())
        self.region_totals += by_region
        self.mirai_totals += mirai
        self.kind_totals += by_kind
        self.episodes.extend(traffic.episodes)
        tracked = {k: ports.get(k, 0) for k in TRACKED_PORTS}
        tracked["other"] = sum(ports.values()) - sum(tracked.values())
        self.daily[index] = {
            "date": traffic.day.isoformat(),
            "packets": len(region),
            "by_port": tracked,
            "by_region": _named(by_region, REGIONS),
            "by_fingerprint": self._fingerprints(by_kind),
            "mirai_by_region": _named(mirai, REGIONS),
            "unique_sources_by_region": _named(uniq, REGIONS),
        }

    @staticmethod
    def _fingerprints(by_kind: Array) -> dict[str, int]:
        out = dict.fromkeys(FINGERPRINT_NAMES, 0)
        for i, kind in enumerate(KINDS):
            out[FINGERPRINTS[kind]] += int(by_kind[i])
        return out

    def port_ranking(self) -> list[tuple[str, int]]:
        """Every destination key with its quarter count, largest first (ties by name)."""
        return sorted(self.ports.items(), key=lambda kv: (-kv[1], kv[0]))

    def region_ranking(self) -> list[tuple[str, int]]:
        """Every region with its quarter count, largest first."""
        pairs = [(REGIONS[i], int(c)) for i, c in enumerate(self.region_totals) if c]
        return sorted(pairs, key=lambda kv: (-kv[1], kv[0]))

    def _victims(self) -> list[dict[str, Any]]:
        victims: dict[int, dict[str, Any]] = {}
        for ep in sorted(self.episodes, key=lambda e: (e.victim, e.start_ns)):
            entry = victims.setdefault(
                ep.victim, {"victim": _ip(ep.victim), "region": ep.region, "packets": 0, "episodes": []}
            )
            entry["packets"] += ep.packets
            entry["episodes"].append(
                {
                    "protocol": ep.protocol,
                    "response": ep.response,
                    "service_port": ep.service_port,
                    "source": _ip(ep.reporter),
                    "start": _iso_ns(ep.start_ns),
                    "end": _iso_ns(ep.end_ns),
                    "seconds": round((ep.end_ns - ep.start_ns) / 1e9, 3),
                    "packets": ep.packets,
                }
            )
        return list(victims.values())

    def to_dict(self) -> dict[str, Any]:
        """The ground truth as JSON-ready data (layout in the module docstring)."""
        daily = [self.daily[i] for i in sorted(self.daily)]
        keys = np.unique(np.concatenate(self.source_keys)) if self.source_keys else np.zeros(0, np.uint64)
        uniq = np.bincount((keys >> np.uint64(32)).astype(np.int64), minlength=len(REGIONS))
        ports, regions = self.port_ranking(), self.region_ranking()
        prev_q, prev_ports, prev_regions, prev_source = self.previous or (None, None, None, None)
        tracked = {k: self.ports.get(k, 0) for k in TRACKED_PORTS}
        tracked["other"] = sum(self.ports.values()) - sum(tracked.values())
        return {
            "format": FORMAT,
            "quarter": self.quarter,
            **self.meta,
            "first_day": self.days[0].isoformat() if self.days else None,
            "last_day": self.days[-1].isoformat() if self.days else None,
            "days": len(self.days),
            "complete": self.complete,
            "daily": daily,
            "totals": {
                "packets": int(self.kind_totals.sum()),
                "by_port": tracked,
                "top_ports": [[k, c] for k, c in ports[:20]],
                "by_region": dict(regions),
                "by_fingerprint": self._fingerprints(self.kind_totals),
                "mirai_by_region": _named(self.mirai_totals, REGIONS),
                "unique_sources": len(keys),
                "unique_sources_by_region": _named(uniq, REGIONS),
            },
            "top5": {
                "ports": ranks_with_previous(ports, prev_ports),
                "regions": ranks_with_previous(regions, prev_regions),
                "previous_quarter": prev_q,
                "previous_rank_source": prev_source,
                "min_margin": {"ports": _min_margin(ports), "regions": _min_margin(regions)},
            },
            "sources": {k: [_ip(a) for a in sorted(v)] for k, v in self.scanner_sources.items()},
            "backscatter": {"episodes": len(self.episodes), "victims": self._victims()},
            "ipv6": {
                "packets": self.ipv6["packets"],
                "backscatter_packets": self.ipv6["backscatter_packets"],
                "scan": {"source": SCANNER, "port": SCAN_PORT, "packets": self.ipv6["scan_packets"]},
            },
            "events": [
                {
                    "kind": e.kind,
                    "subject": e.subject,
                    "start": e.start.isoformat(),
                    "description": e.description,
                }
                for e in self.events
            ],
        }

    def write(self, path: str | Path) -> Path:
        """Write the ground truth as indented JSON; returns the path."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return out
