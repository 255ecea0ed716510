"""Read one quarter from ClickHouse into a ``QuarterData`` (the report's only I/O with the store).

Reads the daily rollups (always GROUP BY with ``sum`` / ``uniqMerge``, since parts merge
eventually), the raw ``packets`` table for backscatter episodes, and ``sensor_health``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any, Protocol

import numpy as np

from reports.quarters import previous_quarter, quarter_days
from reports.series import Episode, QuarterData, SensorHealth, Series
from schemas.fingerprints import Fingerprint

__all__ = ["Queryable", "load_quarter", "port_label"]

PORT_KEY = (
    "multiIf(protocol = 6, concat(toString(dport), '/tcp'), protocol = 17, concat(toString(dport), '/udp'), "
    "protocol = 132, concat(toString(dport), '/sctp'), protocol = 1, 'icmp', protocol = 58, 'icmpv6', "
    "concat('proto/', toString(protocol)))"
)
TOP_PORTS = 10  # daily series kept per quarter (the top 5 and the ranks below, for swaps)
PREVIOUS_PORTS = 200  # keys ranked in the previous quarter
EPISODE_GAP_S = 300  # a victim silent this long starts a new episode
# corsaro's DoS thresholds (DESIGN.md): >= 25 packets, >= 60 s, >= 30 packets per minute
MIN_PACKETS, MIN_SECONDS, MIN_PPM = 25, 60.0, 30.0


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


def _rows(store: Queryable, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    return list(store.query(sql, parameters=params).result_rows)


def _where(sensor: str | None, column: str = "day") -> str:
    cond = f"{column} >= toDate(%(first)s) AND {column} <= toDate(%(last)s)"
    return cond + (" AND sensor = %(sensor)s" if sensor else "")


def _params(quarter: str, sensor: str | None) -> dict[str, Any]:
    days = quarter_days(quarter)
    return {"first": days[0].isoformat(), "last": days[-1].isoformat(), "sensor": sensor or ""}


def _daily(rows: list[tuple[Any, ...]], days: list[date]) -> dict[str, np.ndarray[Any, Any]]:
    index = {d: i for i, d in enumerate(days)}
    out: dict[str, np.ndarray[Any, Any]] = defaultdict(lambda: np.zeros(len(days)))
    for day, key, packets in rows:
        if day in index:
            out[str(key)][index[day]] += float(packets)
    return dict(out)


def load_quarter(store: Queryable, quarter: str, sensor: str | None = None) -> QuarterData:
    """Every figure of ``quarter`` (and the previous quarter's rankings) for one or all sensors."""
    days = quarter_days(quarter)
    prev = previous_quarter(quarter)
    p, pp = _params(quarter, sensor), _params(prev, sensor)
    w = _where(sensor)
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
    data.episodes = load_episodes(store, quarter, sensor)
    data.health = load_health(store, quarter, sensor)
    return data


def load_episodes(store: Queryable, quarter: str, sensor: str | None = None) -> list[Episode]:
    """DoS episodes: a victim's backscatter split at silences of ``EPISODE_GAP_S``, kept when
    they pass corsaro's thresholds."""
    rows = _rows(
        store,
        "SELECT toString(victim), any(toString(region)), toUInt64(toUnixTimestamp(toStartOfMinute(ts))), "
        "count(), toFloat64(min(ts)), toFloat64(max(ts)), groupUniqArray(protocol) FROM packets "
        f"WHERE {_where(sensor)} AND bitAnd(fp_flags, {int(Fingerprint.BACKSCATTER)}) != 0 "
        "GROUP BY victim, toStartOfMinute(ts) ORDER BY victim, 3",
        _params(quarter, sensor),
    )
    out: list[Episode] = []
    current: list[Any] | None = None

    def close(ep: list[Any] | None) -> None:
        if ep is None:
            return
        victim, region, first, last, packets, protos = ep
        seconds = last - first
        if packets >= MIN_PACKETS and seconds >= MIN_SECONDS and packets / (seconds / 60.0) >= MIN_PPM:
            names = "+".join(n for p, n in ((6, "tcp"), (1, "icmp"), (17, "udp")) if p in protos) or "other"
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


def load_health(store: Queryable, quarter: str, sensor: str | None = None) -> list[SensorHealth]:
    """Per sensor: days with data and packets stored (rollups), captured and dropped packets and
    monitored addresses (sensor health records, cumulative per run: the last record of each run)."""
    p = _params(quarter, sensor)
    stored = _rows(
        store,
        f"SELECT toString(sensor), uniqExact(day), sum(packets), min(day), max(day) FROM rollup_region_day "
        f"WHERE {_where(sensor)} GROUP BY sensor ORDER BY sensor",
        p,
    )
    health: dict[str, tuple[int, int, int]] = {}
    hw = _where(sensor, "toDate(ts)")
    for name, seen, dropped, addresses in _rows(
        store,
        "SELECT s, sum(seen), sum(dropped), max(addr) FROM (SELECT toString(sensor) AS s, started, "
        "max(packets_seen) AS seen, max(packets_dropped_kernel) + max(packets_out_of_prefix) AS dropped, "
        f"max(monitored_addresses) AS addr FROM sensor_health WHERE {hw} GROUP BY s, started) GROUP BY s",
        p,
    ):
        health[str(name)] = (int(seen), int(dropped), int(addresses))
    out = []
    for name, ndays, packets, first, last in stored:
        seen, dropped, addresses = health.get(str(name), (0, 0, 0))
        out.append(SensorHealth(str(name), int(ndays), int(packets), seen, dropped, addresses, first, last))
    return out
