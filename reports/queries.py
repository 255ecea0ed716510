"""Read one quarter from ClickHouse into a ``QuarterData`` (the report's only I/O with the store).

Reads the daily rollups (always GROUP BY with ``sum`` / ``uniqMerge``, since parts merge
eventually), the raw ``packets`` table for backscatter episodes, and ``sensor_health``.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, Protocol

import numpy as np

from core.errors import QueryFailed
from reports.quarters import previous_quarter, quarter_days
from reports.series import AsRow, Episode, QuarterData, SensorHealth, Series, ToolRow
from schemas.fingerprints import Fingerprint
from sinks.registry import UNREGISTERED, group_condition

__all__ = [
    "REPORT_TABLES",
    "Queryable",
    "load_quarter",
    "missing_tables",
    "port_label",
    "prefix_addresses",
    "require_schema",
]

PORT_KEY = (
    "multiIf(protocol = 6, concat(toString(dport), '/tcp'), protocol = 17, concat(toString(dport), '/udp'), "
    "protocol = 132, concat(toString(dport), '/sctp'), protocol = 1, 'icmp', protocol = 58, 'icmpv6', "
    "concat('proto/', toString(protocol)))"
)
TOP_PORTS = 10  # daily series kept per quarter (the top 5 and the ranks below, for swaps)
PREVIOUS_PORTS = 200  # keys ranked in the previous quarter
MIRAI_AS_REGIONS = 5  # regions (by Mirai sources) whose top ASes are listed, with the focus region
TOOLS = (
    ("Mirai", Fingerprint.MIRAI),
    ("ZMap", Fingerprint.ZMAP),
    ("Masscan", Fingerprint.MASSCAN),
    ("Nmap (SYN scan)", Fingerprint.NMAP_SYN),
)
EPISODE_GAP_S = 300  # a victim silent this long starts a new episode
# corsaro's DoS thresholds (DESIGN.md): >= 25 packets, >= 60 s, >= 30 packets per minute
MIN_PACKETS, MIN_SECONDS, MIN_PPM = 25, 60.0, 30.0


REPORT_TABLES = ("rollup_port_day", "rollup_region_day", "rollup_fp_region_day", "packets", "sensor_health")


class Queryable(Protocol):
    """What the report needs of a store: ``query`` returning a clickhouse-connect QueryResult."""

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Any: ...


def port_label(key: str, service: str) -> str:
    """'23/tcp', 'telnet' -> '23/TCP (telnet)'; 'icmp' -> 'ICMP'."""
    if "/" in key and not key.startswith("proto/"):
        port, proto = key.split("/", 1)
        base = f"{port}/{proto.upper()}"
    else:
        base = key.upper()
    return f"{base} ({service})" if service and service not in (key, "icmp", "icmpv6") else base


def missing_tables(store: Queryable) -> list[str]:
    """The tables the report reads that the store's database does not hold."""
    rows = store.query("SELECT name FROM system.tables WHERE database = currentDatabase()").result_rows
    have = {str(name) for (name,) in rows}
    return [t for t in REPORT_TABLES if t not in have]


def require_schema(store: Queryable, dsn: str) -> None:
    """Raise ``QueryFailed`` naming ``dsn`` when the store holds no darkscope schema (yet):
    what a newcomer meets pointing the report at a fresh or wrong store."""
    missing = missing_tables(store)
    if not missing:
        return
    what = "no darkscope schema" if len(missing) == len(REPORT_TABLES) else f"no table {', '.join(missing)}"
    raise QueryFailed(
        f"the store at {dsn} holds {what}: nothing has been written there yet. Point --dsn "
        "(DARKSCOPE_SINK_DSN) at the store the sink wrote (`make demo` writes "
        "chdb://demo-out/run-<time>/store), or run the sink (it creates the schema)."
    )


def _rows(store: Queryable, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    return list(store.query(sql, parameters=params).result_rows)


def _where(sensor: str | None, column: str = "day", group: str | None = None) -> str:
    cond = f"{column} >= toDate(%(first)s) AND {column} <= toDate(%(last)s)"
    if group:  # the sensors of the group on each day, by the registry (sinks.registry)
        cond += " AND " + group_condition(group, day=column)
    return cond + (" AND sensor = %(sensor)s" if sensor else "")


def _params(quarter: str, sensor: str | None, group: str | None = None) -> dict[str, Any]:
    days = quarter_days(quarter)
    return {
        "first": days[0].isoformat(),
        "last": days[-1].isoformat(),
        "sensor": sensor or "",
        "sensor_group": group or "",
    }


def _daily(rows: list[tuple[Any, ...]], days: list[date]) -> dict[str, np.ndarray[Any, Any]]:
    index = {d: i for i, d in enumerate(days)}
    out: dict[str, np.ndarray[Any, Any]] = defaultdict(lambda: np.zeros(len(days)))
    for day, key, packets in rows:
        if day in index:
            out[str(key)][index[day]] += float(packets)
    return dict(out)


def load_quarter(
    store: Queryable,
    quarter: str,
    sensor: str | None = None,
    focus_region: str = "",
    group: str | None = None,
) -> QuarterData:
    """Every figure of ``quarter`` (and the previous quarter's rankings) for one or all sensors,
    or the sensors of a registry ``group``; ``focus_region``'s ASes are listed with those of the
    top Mirai regions."""
    days = quarter_days(quarter)
    prev = previous_quarter(quarter)
    p, pp = _params(quarter, sensor, group), _params(prev, sensor, group)
    w = _where(sensor, group=group)
    total = _daily(
        _rows(store, f"SELECT day, '', sum(packets) FROM rollup_region_day WHERE {w} GROUP BY day", p), days
    ).get("", np.zeros(len(days)))

    top = _rows(
        store,
        f"SELECT {PORT_KEY} AS k, argMax(toString(service), packets) FROM "
        f"(SELECT protocol, dport, service, sum(packets) AS packets FROM rollup_port_day WHERE {w} "
        f"GROUP BY protocol, dport, service) GROUP BY k ORDER BY sum(packets) DESC, k LIMIT {TOP_PORTS}",
        p,
    )
    services = {str(k): str(s) for k, s in top}
    port_daily = _daily(
        _rows(
            store,
            f"SELECT day, {PORT_KEY} AS k, sum(packets) FROM rollup_port_day WHERE {w} "
            "AND has(%(keys)s, k) GROUP BY day, k",
            {**p, "keys": list(services) or [""]},
        ),
        days,
    )
    ports = {
        k: Series(k, port_label(k, services[k]), port_daily.get(k, np.zeros(len(days)))) for k in services
    }
    prev_ports = {
        str(k): int(n)
        for k, n in _rows(
            store,
            f"SELECT {PORT_KEY} AS k, sum(packets) AS n FROM rollup_port_day WHERE {w} "
            f"GROUP BY k ORDER BY n DESC, k LIMIT {PREVIOUS_PORTS}",
            pp,
        )
    }

    names: dict[str, str] = {}
    region_rows = _rows(
        store,
        f"SELECT day, toString(region), toString(region_name), sum(packets) FROM rollup_region_day "
        f"WHERE {w} GROUP BY day, region, region_name",
        p,
    )
    for _, code, name, _ in region_rows:
        names[str(code)] = str(name)
    region_daily = _daily([(d, c, n) for d, c, _, n in region_rows], days)
    mirai_rows = _rows(
        store,
        f"SELECT day, toString(region), toString(region_name), sum(packets) FROM rollup_fp_region_day "
        f"WHERE {w} AND fingerprint = 'mirai' GROUP BY day, region, region_name",
        p,
    )
    for _, code, name, _ in mirai_rows:
        names.setdefault(str(code), str(name))
    mirai_daily = _daily([(d, c, n) for d, c, _, n in mirai_rows], days)
    backscatter = _daily(
        _rows(
            store,
            f"SELECT day, '', sum(packets) FROM rollup_fp_region_day WHERE {w} "
            "AND fingerprint = 'backscatter' GROUP BY day",
            p,
        ),
        days,
    ).get("", np.zeros(len(days)))
    prev_regions = {
        str(k): int(n)
        for k, n in _rows(
            store,
            f"SELECT toString(region), sum(packets) FROM rollup_region_day WHERE {w} GROUP BY region",
            pp,
        )
    }
    region_sources = {
        str(k): int(n)
        for k, n in _rows(
            store,
            f"SELECT toString(region), uniqMerge(sources) FROM rollup_region_day WHERE {w} GROUP BY region",
            p,
        )
    }
    mirai_sources = {
        str(k): int(n)
        for k, n in _rows(
            store,
            f"SELECT toString(region), uniqMerge(sources) FROM rollup_fp_region_day WHERE {w} "
            "AND fingerprint = 'mirai' GROUP BY region",
            p,
        )
    }
    data = QuarterData(
        quarter=quarter.upper(),
        previous=prev,
        sensor=sensor,
        days=days,
        total=total,
        ports=ports,
        regions={},
        mirai={},
        backscatter=backscatter,
        previous_ports=prev_ports,
        previous_regions=prev_regions,
        region_sources=region_sources,
        mirai_sources=mirai_sources,
        region_names=names,
    )
    data.regions = {c: Series(c, data.region_label(c), v) for c, v in region_daily.items()}
    data.mirai = {c: Series(c, data.region_label(c), v) for c, v in mirai_daily.items()}
    data.sensor_group = group
    data.unregistered = load_unregistered(store, quarter, sensor, group)
    data.episodes = load_episodes(store, quarter, sensor, group)
    data.health = load_health(store, quarter, sensor, group)
    ranked = sorted(mirai_sources, key=lambda k: (-mirai_sources[k], k))[:MIRAI_AS_REGIONS]
    focus_and_top = list(dict.fromkeys([*ranked, *(r for r in (focus_region.upper(),) if r)]))
    data.mirai_asns = load_mirai_asns(store, quarter, sensor, focus_and_top, group=group)
    data.tools = load_tools(store, quarter, sensor, group)
    return data


def load_mirai_asns(
    store: Queryable,
    quarter: str,
    sensor: str | None,
    regions: Sequence[str],
    top: int = 3,
    group: str | None = None,
) -> list[AsRow]:
    """The ``top`` ASes by Mirai sources in each of ``regions`` (per-source verdict)."""
    if not regions:
        return []
    rows = _rows(
        store,
        "SELECT toString(region), asn, toString(as_org), uniqExact(source), count() FROM packets "
        f"WHERE {_where(sensor, group=group)} AND bitAnd(fp_verdict, {int(Fingerprint.MIRAI)}) != 0 "
        "AND region IN %(regions)s GROUP BY region, asn, as_org "
        f"ORDER BY region, 4 DESC, asn LIMIT {int(top)} BY region",
        {**_params(quarter, sensor, group), "regions": list(regions)},
    )
    order = {r: i for i, r in enumerate(regions)}
    out = [AsRow(str(r), int(a), str(o), int(s), int(n)) for r, a, o, s, n in rows]
    return sorted(out, key=lambda x: (order.get(x.region, 99), -x.sources, x.asn))


def load_tools(store: Queryable, quarter: str, sensor: str | None, group: str | None = None) -> list[ToolRow]:
    """Sources and packets of each scanning tool, by the per-source verdict (a chance match of
    one packet, such as ZMap's IP id 54321, does not make a source a ZMap source)."""
    conds = [f"bitAnd(fp_verdict, {int(bit)}) != 0" for _, bit in TOOLS]
    cols = ", ".join(f"uniqExactIf(source, {c}), countIf({c})" for c in conds)
    (row,) = _rows(
        store,
        f"SELECT {cols} FROM packets WHERE {_where(sensor, group=group)}",
        _params(quarter, sensor, group),
    )
    return [ToolRow(name, int(row[2 * i]), int(row[2 * i + 1])) for i, (name, _) in enumerate(TOOLS)]


def load_episodes(
    store: Queryable, quarter: str, sensor: str | None = None, group: str | None = None
) -> list[Episode]:
    """DoS episodes: a victim's backscatter split at silences of ``EPISODE_GAP_S``, kept when
    they pass corsaro's thresholds."""
    rows = _rows(
        store,
        # victim is IPv6 like `source`: an IPv4 victim (::ffff:a.b.c.d) is shown as a.b.c.d
        "SELECT replaceRegexpOne(toString(victim), '^::ffff:', ''), any(toString(region)), "
        "toUInt64(toUnixTimestamp(toStartOfMinute(ts))), "
        "count(), toFloat64(min(ts)), toFloat64(max(ts)), groupUniqArray(protocol) FROM packets "
        f"WHERE {_where(sensor, group=group)} AND bitAnd(fp_flags, {int(Fingerprint.BACKSCATTER)}) != 0 "
        "GROUP BY victim, toStartOfMinute(ts) ORDER BY victim, 3",
        _params(quarter, sensor, group),
    )
    out: list[Episode] = []
    current: list[Any] | None = None

    def close(ep: list[Any] | None) -> None:
        if ep is None:
            return
        victim, region, first, last, packets, protos = ep
        seconds = last - first
        if packets >= MIN_PACKETS and seconds >= MIN_SECONDS and packets / (seconds / 60.0) >= MIN_PPM:
            names = (
                "+".join(n for p, n in ((6, "tcp"), (1, "icmp"), (58, "icmpv6"), (17, "udp")) if p in protos)
                or "other"
            )
            out.append(
                Episode(
                    victim,
                    region,
                    datetime.fromtimestamp(first, tz=UTC),
                    datetime.fromtimestamp(last, tz=UTC),
                    packets,
                    names,
                )
            )

    for victim, region, _, n, first, last, protos in rows:
        if current is not None and (current[0] != victim or first - current[3] > EPISODE_GAP_S):
            close(current)
            current = None
        if current is None:
            current = [victim, region, first, last, 0, set()]
        current[3] = max(current[3], last)
        current[4] += int(n)
        current[5].update(int(x) for x in protos)
    close(current)
    return out


def prefix_addresses(prefixes: Sequence[str]) -> int:
    """Addresses in the union of ``prefixes`` ('198.51.100.0/24' -> 256); 0 when none parse."""
    nets: dict[int, list[Any]] = {4: [], 6: []}
    for text in prefixes:
        try:
            net = ipaddress.ip_network(str(text).strip(), strict=False)
        except ValueError:
            continue
        nets[net.version].append(net)
    return sum(n.num_addresses for group in nets.values() for n in ipaddress.collapse_addresses(group))


def load_health(
    store: Queryable, quarter: str, sensor: str | None = None, group: str | None = None
) -> list[SensorHealth]:
    """Per sensor: days with data, packets stored and stored per day (rollups), captured and dropped
    packets and monitored addresses (sensor health records, cumulative per run: the last record of
    each run)."""
    p = _params(quarter, sensor, group)
    stored = _rows(
        store,
        f"SELECT toString(sensor), uniqExact(day), sum(packets), min(day), max(day) FROM rollup_region_day "
        f"WHERE {_where(sensor, group=group)} GROUP BY sensor ORDER BY sensor",
        p,
    )
    health: dict[str, tuple[int, int, int]] = {}
    hw = _where(sensor, "toDate(ts)", group)
    for name, seen, dropped, addresses, prefixes in _rows(
        store,
        "SELECT s, sum(seen), sum(dropped), max(addr), groupUniqArrayArray(pfx) FROM (SELECT "
        "toString(sensor) AS s, started, max(packets_seen) AS seen, max(packets_dropped_kernel) + "
        "max(packets_out_of_prefix) AS dropped, max(monitored_addresses) AS addr, "
        f"groupUniqArrayArray(prefixes) AS pfx FROM sensor_health WHERE {hw} GROUP BY s, started) GROUP BY s",
        p,
    ):
        # A sensor that did not count its addresses still names its prefixes: count them here.
        known = int(addresses) or prefix_addresses(prefixes)
        health[str(name)] = (int(seen), int(dropped), known)
    days = quarter_days(quarter)
    index = {d: i for i, d in enumerate(days)}
    daily: dict[str, np.ndarray[Any, Any]] = defaultdict(lambda: np.full(len(days), np.nan))
    for day, name, packets in _rows(
        store,
        "SELECT day, toString(sensor), sum(packets) FROM rollup_region_day "
        f"WHERE {_where(sensor, group=group)} GROUP BY day, sensor",
        p,
    ):
        if day in index:  # a day with no row stays NaN: no data, which is not 0 packets
            daily[str(name)][index[day]] = float(packets)
    registered = _registry_addresses(store, p, sensor, group)
    out = []
    for name, ndays, packets, first, last in stored:
        seen, dropped, reported = health.get(str(name), (0, 0, 0))
        addresses = registered.get(str(name)) or reported
        out.append(
            SensorHealth(
                str(name), int(ndays), int(packets), seen, dropped, addresses, first, last, daily[str(name)]
            )
        )
    return out


def _registry_addresses(
    store: Queryable, p: dict[str, Any], sensor: str | None, group: str | None
) -> dict[str, int]:
    """Monitored addresses of each sensor the registry lists, averaged over its days with data
    (its prefixes may change within the quarter); the registry wins over the health records."""
    try:
        rows = _rows(
            store,
            "SELECT r.sensor, avg(r.monitored_addresses) FROM registry_days AS r WHERE (r.day, r.sensor) IN "
            f"(SELECT day, toString(sensor) FROM rollup_region_day WHERE {_where(sensor, group=group)}) "
            "GROUP BY r.sensor",
            p,
        )
    except QueryFailed:  # a store from before the registry (schema step 6)
        return {}
    return {str(name): round(float(avg)) for name, avg in rows}


def load_unregistered(
    store: Queryable, quarter: str, sensor: str | None = None, group: str | None = None
) -> list[tuple[str, int]]:
    """Sensors with packets in the quarter on days the registry has no period for them, and
    those packets: counted under the group 'unregistered', and said so in the report (once a
    registry is loaded)."""
    if group and group != UNREGISTERED:
        return []
    w = _where(sensor) + " AND " + group_condition(UNREGISTERED)
    try:
        if not _rows(store, "SELECT 1 FROM sensor_registry LIMIT 1", {}):
            return []  # no registry loaded: there is nothing to be missing from
        rows = _rows(
            store,
            f"SELECT toString(sensor), sum(packets) FROM rollup_region_day WHERE {w} "
            "GROUP BY sensor ORDER BY sensor",
            _params(quarter, sensor),
        )
    except QueryFailed:  # a store from before the registry (schema step 6): nothing to say
        return []
    return [(str(s), int(n)) for s, n in rows]
