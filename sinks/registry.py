"""The sensor registry: which sensor belongs to which group, monitors which prefixes, and when.

A CSIRT reports on a *group* of sensors (its own country's, a partner's), and a rate per
monitored address needs each sensor's address count on each day. Sensors only report their own
prefixes in their health records, and a sensor missing from the registry must still be counted,
so the registry is a file the operator writes (TOML, read with :mod:`tomllib`)::

    [[sensor]]
    id = "tokyo-1"
    group = "japan"
    country = "JP"
    prefixes = ["198.51.100.0/24"]
    active_from = 2022-01-01
    active_until = 2022-04-30     # inclusive; leave out while the sensor runs

    [[sensor]]                     # the same sensor after its prefixes changed
    id = "tokyo-1"
    group = "japan"
    country = "JP"
    prefixes = ["198.51.100.0/23"]
    active_from = 2022-05-01

A sensor may appear several times, once per period; its periods must not overlap (a day in two
periods would count the sensor twice). ``darkscope sensors load FILE`` appends every period to
``sensor_registry`` with the load's time: older loads are kept (history of the file), the latest
load is the registry in force (``sensors_current``), and ``registry_days`` expands it to one row
per sensor and day. A packet whose sensor has no period on its day counts under the group
``unregistered`` (:data:`UNREGISTERED`).
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

from core.errors import ConfigError

__all__ = [
    "REGISTRY_STATEMENTS",
    "UNREGISTERED",
    "SensorPeriod",
    "current_registry",
    "group_condition",
    "load_registry",
    "parse_registry",
    "registry_groups",
    "registry_loads",
    "store_registry",
]

logger = logging.getLogger(__name__)

UNREGISTERED = "unregistered"
_KEYS = {"id", "group", "country", "prefixes", "active_from", "active_until"}

SENSOR_REGISTRY = """
CREATE TABLE IF NOT EXISTS sensor_registry (
    loaded_at DateTime64(3, 'UTC'),
    source_file String,
    sensor String,
    sensor_group LowCardinality(String),
    country LowCardinality(String),
    prefixes Array(String),
    monitored_addresses UInt64,
    active_from Date,
    active_until Nullable(Date)
)
ENGINE = MergeTree
ORDER BY (loaded_at, sensor, active_from)
"""
# The latest load is the registry in force; earlier loads stay for the record.
SENSORS_CURRENT = """
CREATE VIEW IF NOT EXISTS sensors_current AS
SELECT sensor, CAST(sensor_group, 'String') AS sensor_group, CAST(country, 'String') AS country,
       prefixes, monitored_addresses, active_from, active_until, loaded_at, source_file
FROM sensor_registry WHERE loaded_at = (SELECT max(loaded_at) FROM sensor_registry)
"""
# One row per sensor and day of a period (an open period runs to today).
REGISTRY_DAYS = """
CREATE VIEW IF NOT EXISTS registry_days AS
SELECT addDays(active_from, arrayJoin(range(toUInt32(greatest(0,
           dateDiff('day', active_from, ifNull(active_until, today())) + 1))))) AS day,
       sensor, sensor_group, country, monitored_addresses
FROM sensors_current
"""


# The group of a rollup row joined with ``registry_days AS r``: 'unregistered' when none matched
# (an unmatched LEFT JOIN gives the empty string, join_use_nulls being off).
_GROUP_OF = f"if(r.sensor_group = '', '{UNREGISTERED}', r.sensor_group)"


def _group_view(name: str, rollup: str, keys: Sequence[tuple[str, str]], where: str = "") -> str:
    """A daily analyst view of ``rollup`` per sensor group (sources merged across the group)."""
    cols = ", ".join(f"CAST({k}, '{t}') AS {k}" for k, t in keys)
    names = ", ".join(k for k, _ in keys)
    cond = f"WHERE {where}" if where else ""
    return f"""
CREATE VIEW IF NOT EXISTS {name} AS
SELECT day, sensor_group, {names}, toUInt64(sum(packets)) AS packets, uniqMerge(sources) AS sources
FROM (
    SELECT p.day AS day, {_GROUP_OF} AS sensor_group, {cols}, p.packets AS packets, p.sources AS sources
    FROM (SELECT * FROM {rollup} {cond}) AS p
    LEFT JOIN registry_days AS r ON p.day = r.day AND toString(p.sensor) = r.sensor
)
GROUP BY day, sensor_group, {names}
"""


# Packets, unique sources and packets per monitored address per day and group: the telescope's
# rate by group. Addresses are those of every registered sensor active that day.
GROUP_DAILY = f"""
CREATE VIEW IF NOT EXISTS group_daily AS
SELECT d.day AS day, d.sensor_group AS sensor_group, d.sensors AS sensors, d.packets AS packets,
       d.sources AS sources, a.monitored_addresses AS monitored_addresses,
       if(a.monitored_addresses > 0, d.packets / a.monitored_addresses, NULL) AS packets_per_address
FROM (
    SELECT p.day AS day, {_GROUP_OF} AS sensor_group, toUInt64(uniqExact(p.sensor)) AS sensors,
           toUInt64(sum(p.packets)) AS packets, uniqMerge(p.sources) AS sources
    FROM rollup_region_day AS p
    LEFT JOIN registry_days AS r ON p.day = r.day AND toString(p.sensor) = r.sensor
    GROUP BY day, sensor_group
) AS d
LEFT JOIN (
    SELECT day, sensor_group, toUInt64(sum(monitored_addresses)) AS monitored_addresses
    FROM registry_days GROUP BY day, sensor_group
) AS a ON d.day = a.day AND d.sensor_group = a.sensor_group
"""

REGISTRY_STATEMENTS = [
    SENSOR_REGISTRY,
    SENSORS_CURRENT,
    REGISTRY_DAYS,
    GROUP_DAILY,
    _group_view(
        "group_daily_ports",
        "rollup_port_day",
        [("protocol", "UInt8"), ("dport", "UInt16"), ("service", "String")],
    ),
    _group_view(
        "group_daily_regions", "rollup_region_day", [("region", "String"), ("region_name", "String")]
    ),
    _group_view(
        "group_daily_mirai",
        "rollup_fp_region_day",
        [("region", "String"), ("region_name", "String")],
        where="fingerprint = 'mirai'",
    ),
]


@dataclass(frozen=True)
class SensorPeriod:
    """One sensor over one period: its group, country and monitored prefixes."""

    sensor: str
    group: str
    country: str
    prefixes: tuple[str, ...]
    active_from: date
    active_until: date | None = None  # inclusive; None: still active

    @property
    def monitored_addresses(self) -> int:
        """Addresses in the union of the prefixes (overlaps counted once)."""
        nets: dict[int, list[Any]] = {4: [], 6: []}
        for p in self.prefixes:
            net = ipaddress.ip_network(p, strict=False)
            nets[net.version].append(net)
        return sum(n.num_addresses for v in nets.values() for n in ipaddress.collapse_addresses(v))

    def covers(self, day: date) -> bool:
        """Whether ``day`` falls in the period."""
        return self.active_from <= day and (self.active_until is None or day <= self.active_until)


def _date(value: Any, where: str, key: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ConfigError(f"{where}: {key} must be a date (2022-04-01), not {value!r}")


def _period(entry: Mapping[str, Any], where: str) -> SensorPeriod:
    unknown = set(entry) - _KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_KEYS))})"
        )
    for key in ("id", "group", "active_from"):
        if key not in entry or entry[key] in ("", None):
            raise ConfigError(f"{where}: {key} is missing")
    sensor, group = str(entry["id"]), str(entry["group"])
    if group == UNREGISTERED:
        raise ConfigError(
            f"{where}: group {UNREGISTERED!r} is reserved for sensors missing from the registry"
        )
    prefixes = entry.get("prefixes", [])
    if not isinstance(prefixes, list):
        raise ConfigError(f"{where}: prefixes must be a list of CIDR strings")
    for p in prefixes:
        try:
            ipaddress.ip_network(str(p), strict=False)
        except ValueError as exc:
            raise ConfigError(f"{where}: prefix {p!r} is not a CIDR prefix ({exc})") from exc
    start = _date(entry["active_from"], where, "active_from")
    end = _date(entry["active_until"], where, "active_until") if entry.get("active_until") else None
    if end is not None and end < start:
        raise ConfigError(f"{where}: active_until {end} is before active_from {start}")
    return SensorPeriod(
        sensor, group, str(entry.get("country", "")).upper(), tuple(str(p) for p in prefixes), start, end
    )


def parse_registry(text: str, name: str = "registry") -> list[SensorPeriod]:
    """The sensor periods of a registry file's text (ConfigError naming the entry at fault)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: not valid TOML: {exc}") from exc
    entries = doc.get("sensor", [])
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{name}: no [[sensor]] entries")
    periods = [_period(e, f"{name}: sensor #{i + 1}") for i, e in enumerate(entries)]
    by_sensor: dict[str, list[SensorPeriod]] = {}
    for p in periods:
        by_sensor.setdefault(p.sensor, []).append(p)
    for sensor, ps in by_sensor.items():
        ps.sort(key=lambda p: p.active_from)
        for a, b in itertools.pairwise(ps):
            if a.active_until is None or a.active_until >= b.active_from:
                raise ConfigError(
                    f"{name}: sensor {sensor!r} has overlapping periods (from {a.active_from} and from "
                    f"{b.active_from}): close the first with active_until before the second starts"
                )
    return periods


def load_registry(path: Path) -> list[SensorPeriod]:
    """Read and check a registry file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the sensor registry {path}: {exc}") from exc
    return parse_registry(text, str(path))


class _Store(Protocol):
    """What the registry needs of a store (``sinks.store.Store`` fits)."""

    client: Any

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any: ...


def store_registry(
    store: _Store, periods: Sequence[SensorPeriod], source_file: str = "", loaded_at: datetime | None = None
) -> datetime:
    """Append ``periods`` as a new load (the registry in force from now on); returns its time."""
    at = loaded_at or datetime.now(UTC)
    rows = [
        [
            at,
            source_file,
            p.sensor,
            p.group,
            p.country,
            list(p.prefixes),
            p.monitored_addresses,
            p.active_from,
            p.active_until,
        ]
        for p in periods
    ]
    store.client.insert(
        "sensor_registry",
        rows,
        column_names=[
            "loaded_at",
            "source_file",
            "sensor",
            "sensor_group",
            "country",
            "prefixes",
            "monitored_addresses",
            "active_from",
            "active_until",
        ],
    )
    logger.info(
        "sensor registry loaded: %d periods of %d sensors", len(rows), len({p.sensor for p in periods})
    )
    return at


def current_registry(store: _Store) -> list[SensorPeriod]:
    """The registry in force (the latest load), by sensor and period."""
    rows = store.query(
        "SELECT sensor, sensor_group, country, prefixes, active_from, active_until FROM sensors_current "
        "ORDER BY sensor, active_from"
    ).result_rows
    return [SensorPeriod(str(s), str(g), str(c), tuple(str(x) for x in p), f, u) for s, g, c, p, f, u in rows]


def registry_loads(store: _Store) -> list[tuple[datetime, str, list[SensorPeriod]]]:
    """Every load of the registry, oldest first: its time, its file and its periods."""
    rows = store.query(
        "SELECT loaded_at, source_file, sensor, CAST(sensor_group, 'String'), CAST(country, 'String'), "
        "prefixes, active_from, active_until FROM sensor_registry ORDER BY loaded_at, sensor, active_from"
    ).result_rows
    loads: dict[Any, tuple[datetime, str, list[SensorPeriod]]] = {}
    for at, src, s, g, c, p, f, u in rows:
        when = at if at.tzinfo else at.replace(tzinfo=UTC)
        loads.setdefault(at, (when, str(src), []))[2].append(
            SensorPeriod(str(s), str(g), str(c), tuple(str(x) for x in p), f, u)
        )
    return list(loads.values())


def registry_groups(store: _Store) -> list[str]:
    """Groups of the registry in force."""
    return sorted({p.group for p in current_registry(store)})


def group_condition(group: str, day: str = "day", sensor: str = "sensor", param: str = "sensor_group") -> str:
    """A WHERE condition keeping the rows of ``(day, sensor)`` columns in a group, by the
    registry on each day; the group's name is bound as the query parameter ``param``
    (``unregistered``: the rows of sensors with no period on their day)."""
    if group == UNREGISTERED:
        return f"({day}, toString({sensor})) NOT IN (SELECT day, sensor FROM registry_days)"
    return (
        f"({day}, toString({sensor})) IN (SELECT day, sensor FROM registry_days "
        f"WHERE sensor_group = %({param})s)"
    )
