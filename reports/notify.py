"""Notification lists: the sources a CSIRT reports to the operators (ASes) that run them.

JPCERT/CC provides "information to operators managing the source IP addresses of Mirai
packets", and to the national CSIRTs of the regions concerned. ``darkscope notify`` reads
``sources_daily`` (:mod:`sinks.sources`) over a period, keeps the sources that pass the filters
(region, AS, fingerprint, sensor group, minimum packets), and writes:

- per AS, ``AS<number>-<organisation>.csv`` and ``.json``: each source with its evidence (first
  and last seen, packets, distinct destinations and ports, destination ports, fingerprints,
  sensor groups that saw it). A source is filed under the AS (and region) of most of its
  packets, so it is in exactly one AS file;
- per region, ``region-<CC>.csv`` and ``.json``: the region's ASes with their sources and
  packets, for its national CSIRT.

Sources of private, shared, loopback, documentation or otherwise reserved space are never
listed (Python's ``ipaddress`` ``is_global``): they are spoofed or misrouted, and no operator
can act on them. Every filter reaches ClickHouse as a bound query parameter.
"""

from __future__ import annotations

import csv
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

from schemas.fingerprints import Fingerprint
from sinks.registry import UNREGISTERED, group_condition
from sinks.sources import PORTS_KEPT, port_name

__all__ = [
    "FINGERPRINTS",
    "AsList",
    "NotifyFilter",
    "Notification",
    "SourceEvidence",
    "find_sources",
    "fingerprint_names",
    "notification",
    "write_notification",
]

FORMAT = "darkscope.notify/1"
# --fingerprint choices -> the condition on a source's merged bits. Scanners by per-source verdict
# (a 16-bit chance match does not make a ZMap source); a backscatter victim by the per-packet flag
# (its replies are what the telescope sees).
_MIRAI, _ZMAP, _MASSCAN = int(Fingerprint.MIRAI), int(Fingerprint.ZMAP), int(Fingerprint.MASSCAN)
_BACKSCATTER = int(Fingerprint.BACKSCATTER)
FINGERPRINTS: dict[str, str] = {
    "mirai": f"bitAnd(verdict, {_MIRAI}) != 0",
    "zmap": f"bitAnd(verdict, {_ZMAP}) != 0",
    "masscan": f"bitAnd(verdict, {_MASSCAN}) != 0",
    "backscatter-victim": f"bitAnd(flags, {_BACKSCATTER}) != 0",
}
FINGERPRINTS["any"] = " OR ".join(f"({c})" for c in FINGERPRINTS.values())
_NAMES = {
    int(Fingerprint.MIRAI): "mirai",
    int(Fingerprint.ZMAP): "zmap",
    int(Fingerprint.MASSCAN): "masscan",
    int(Fingerprint.NMAP_SYN): "nmap_syn",
    int(Fingerprint.ICMP_ECHO_SCAN): "icmp_echo_scan",
}


class Queryable(Protocol):
    """What notify needs of a store: ``query`` with bound parameters."""

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any: ...


@dataclass(frozen=True)
class NotifyFilter:
    """Which sources to list: the period (days, inclusive) and the optional filters."""

    since: date
    until: date
    regions: tuple[str, ...] = ()
    asns: tuple[int, ...] = ()
    fingerprint: str | None = None  # a key of FINGERPRINTS; None: every source
    sensor_group: str | None = None
    min_packets: int = 1


@dataclass(frozen=True)
class SourceEvidence:
    """One source to report, with what the telescope saw of it."""

    source: str
    region: str
    region_name: str
    asn: int
    as_org: str
    first_seen: datetime
    last_seen: datetime
    packets: int
    destinations: int
    ports: int
    dst_ports: tuple[str, ...]  # up to 10 of its destination ports (sinks.sources)
    fingerprints: tuple[str, ...]
    sensor_groups: tuple[str, ...]

    def row(self) -> dict[str, Any]:
        """The CSV / JSON fields."""
        return {
            "source": self.source,
            "region": self.region,
            "asn": self.asn,
            "as_org": self.as_org,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "packets": self.packets,
            "destinations": self.destinations,
            "ports": self.ports,
            "dst_ports": list(self.dst_ports),
            "fingerprints": list(self.fingerprints),
            "sensor_groups": list(self.sensor_groups),
        }


@dataclass(frozen=True)
class AsList:
    """The sources of one AS, and the files they went to."""

    asn: int
    as_org: str
    regions: tuple[str, ...]
    sources: tuple[SourceEvidence, ...]
    stem: str  # file name without extension

    @property
    def packets(self) -> int:
        """Packets of the AS's listed sources."""
        return sum(s.packets for s in self.sources)


@dataclass(frozen=True)
class Notification:
    """Everything one ``notify`` run lists."""

    filters: NotifyFilter
    ases: tuple[AsList, ...]
    excluded_reserved: int  # sources dropped because their address is not globally routable
    generated: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def sources(self) -> int:
        """Sources listed, over every AS."""
        return sum(len(a.sources) for a in self.ases)


def _address(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(str(value))
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def fingerprint_names(flags: int, verdict: int) -> tuple[str, ...]:
    """What a source was recognised as: scanners by verdict, a backscatter victim by its replies."""
    names = [name for bit, name in _NAMES.items() if verdict & bit]
    if flags & _BACKSCATTER:
        names.append("backscatter-victim")
    return tuple(names)


def find_sources(store: Queryable, f: NotifyFilter) -> tuple[list[SourceEvidence], int]:
    """The sources that pass ``f``, by packets (largest first), and how many reserved-space
    sources were left out."""
    if f.fingerprint is not None and f.fingerprint not in FINGERPRINTS:
        raise ValueError(f"unknown fingerprint {f.fingerprint!r}; known: {', '.join(FINGERPRINTS)}")
    params: dict[str, Any] = {"since": f.since, "until": f.until, "min_packets": max(int(f.min_packets), 1)}
    where = ["s.day >= %(since)s", "s.day <= %(until)s"]
    if f.regions:
        where.append("s.region IN %(regions)s")
        params["regions"] = [r.upper() for r in f.regions]
    if f.asns:
        where.append("s.asn IN %(asns)s")
        params["asns"] = [int(a) for a in f.asns]
    if f.sensor_group:
        where.append(group_condition(f.sensor_group, day="s.day", sensor="s.sensor"))
        if f.sensor_group != UNREGISTERED:
            params["sensor_group"] = f.sensor_group
    having = ["packets >= %(min_packets)s"]
    if f.fingerprint is not None:
        having.append(f"({FINGERPRINTS[f.fingerprint]})")
    sql = (
        "SELECT toString(source), argMax(region, rp), argMax(region_name, rp), argMax(asn, rp), "
        "argMax(as_org, rp), min(first), max(last), toUInt64(sum(rp)) AS packets, uniqMerge(dst), "
        f"uniqExactMerge(prt), groupUniqArrayArray({PORTS_KEPT})(top), groupBitOr(fl) AS flags, "
        "groupBitOr(vd) AS verdict, groupUniqArray(grp) "
        "FROM (SELECT s.source AS source, toString(s.region) AS region, "
        "toString(s.region_name) AS region_name, "
        "s.asn AS asn, toString(s.as_org) AS as_org, s.first_seen AS first, s.last_seen AS last, "
        "s.packets AS rp, s.destinations AS dst, s.ports AS prt, s.dst_ports AS top, s.fp_flags AS fl, "
        f"s.fp_verdict AS vd, if(r.sensor_group = '', '{UNREGISTERED}', r.sensor_group) AS grp "
        "FROM sources_daily AS s LEFT JOIN registry_days AS r "
        "ON s.day = r.day AND toString(s.sensor) = r.sensor "
        f"WHERE {' AND '.join(where)}) "
        f"GROUP BY source HAVING {' AND '.join(having)} ORDER BY packets DESC, source"
    )
    out: list[SourceEvidence] = []
    reserved = 0
    for (
        src,
        region,
        name,
        asn,
        org,
        first,
        last,
        packets,
        dst,
        ports,
        top,
        flags,
        verdict,
        groups,
    ) in store.query(sql, params).result_rows:
        ip = _address(src)
        if not ip.is_global:
            reserved += 1
            continue
        out.append(
            SourceEvidence(
                str(ip),
                str(region),
                str(name),
                int(asn),
                str(org),
                _utc(first),
                _utc(last),
                int(packets),
                int(dst),
                int(ports),
                tuple(port_name(int(k)) for k in sorted(top)),
                fingerprint_names(int(flags), int(verdict)),
                tuple(sorted(str(g) for g in groups)),
            )
        )
    return out, reserved


def _slug(org: str) -> str:
    text = re.sub(r"[^a-z0-9]+", "-", org.lower()).strip("-")
    return text[:48].rstrip("-") or "unknown"


def notification(store: Queryable, f: NotifyFilter) -> Notification:
    """The sources that pass ``f``, grouped by AS (largest first by packets)."""
    sources, reserved = find_sources(store, f)
    by_as: dict[int, list[SourceEvidence]] = {}
    for s in sources:
        by_as.setdefault(s.asn, []).append(s)
    lists = []
    for asn, rows in by_as.items():
        orgs = [s.as_org for s in rows if s.as_org]
        org = max(set(orgs), key=orgs.count) if orgs else ""
        lists.append(
            AsList(asn, org, tuple(sorted({s.region for s in rows})), tuple(rows), f"AS{asn}-{_slug(org)}")
        )
    lists.sort(key=lambda a: (-a.packets, a.asn))
    return Notification(f, tuple(lists), reserved)


_CSV_FIELDS = [
    "source",
    "region",
    "asn",
    "as_org",
    "first_seen",
    "last_seen",
    "packets",
    "destinations",
    "ports",
    "dst_ports",
    "fingerprints",
    "sensor_groups",
]


def _csv(path: Path, fields: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(fields), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: " ".join(v) if isinstance(v, list) else v for k, v in row.items()})


def _filters(f: NotifyFilter) -> dict[str, Any]:
    d = asdict(f)
    d["since"], d["until"] = f.since.isoformat(), f.until.isoformat()
    d["regions"], d["asns"] = list(f.regions), list(f.asns)
    return d


def write_notification(n: Notification, out_dir: Path) -> list[Path]:
    """Write one CSV and one JSON per AS and per region into ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    head = {
        "format": FORMAT,
        "generated": n.generated.isoformat(timespec="seconds"),
        "period": {"since": n.filters.since.isoformat(), "until": n.filters.until.isoformat()},
        "filters": _filters(n.filters),
    }
    paths: list[Path] = []
    regions: dict[str, dict[int, dict[str, Any]]] = {}
    for a in n.ases:
        rows = [s.row() for s in a.sources]
        _csv(out_dir / f"{a.stem}.csv", _CSV_FIELDS, rows)
        doc = {**head, "asn": a.asn, "as_org": a.as_org, "regions": list(a.regions), "sources": rows}
        (out_dir / f"{a.stem}.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        paths += [out_dir / f"{a.stem}.csv", out_dir / f"{a.stem}.json"]
        for s in a.sources:
            entry = regions.setdefault(s.region, {}).setdefault(
                a.asn,
                {"asn": a.asn, "as_org": a.as_org, "sources": 0, "packets": 0, "file": f"{a.stem}.csv"},
            )
            entry["sources"] += 1
            entry["packets"] += s.packets
    for region, ases in sorted(regions.items()):
        rows = sorted(ases.values(), key=lambda e: (-e["packets"], e["asn"]))
        stem = f"region-{_slug(region).upper()}"
        _csv(out_dir / f"{stem}.csv", ["asn", "as_org", "sources", "packets", "file"], rows)
        doc = {
            **head,
            "region": region,
            "ases": len(rows),
            "sources": sum(e["sources"] for e in rows),
            "packets": sum(e["packets"] for e in rows),
            "list": rows,
        }
        (out_dir / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        paths += [out_dir / f"{stem}.csv", out_dir / f"{stem}.json"]
    return paths
