"""ClickHouse schema of darkscope, as ordered, idempotent migration steps.

Tables and views (the report and analysts rely on these names and columns):

``packets`` — raw enriched packets, one row per packet (MergeTree, PARTITION BY toYYYYMMDD(ts),
ORDER BY (sensor, protocol, dport, ts), TTL from ``DARKSCOPE_SINK_TTL_DAYS``)::

    ts DateTime64(9,'UTC'), day Date (= toDate(ts)), sensor, batch_seq, ip_version UInt8,
    src IPv4, dst IPv4, src6 IPv6, dst6 IPv6 (:: for IPv4 packets),
    source IPv6 (= src6, or src mapped to ::ffff:a.b.c.d: the unique-source key),
    protocol UInt8, sport UInt16, dport UInt16, tcp_flags UInt8, tcp_seq, tcp_ack, tcp_window,
    tcp_opt_len, tcp_opt_kinds, tcp_mss, tcp_wscale, ip_id, ttl, ip_flags (DF 2, MF 1),
    ip_reserved (the IPv4 reserved bit), frag_offset, length UInt32 (an IPv6 jumbogram's too),
    caplen UInt32 (bytes captured from the IP header on; 0 = not known),
    truncated UInt8 (header fields the snaplen cut: 1 L4 header, 2 TCP options, 4 ICMP quote),
    icmp_type, icmp_code, inner_protocol, inner_src IPv4, inner_dst IPv4, inner_src6 IPv6,
    inner_dst6 IPv6 (the datagram an ICMP / ICMPv6 error quotes), inner_sport, inner_dport,
    service, region (ISO 3166-1 alpha-2, 'ZZ' unknown), region_name, asn UInt32, as_org,
    fp_flags UInt16, fp_verdict UInt16 (bits of streams.fingerprints.Fingerprint),
    victim IPv6 like ``source`` (backscatter packets: the replying host, or for an ICMP / ICMPv6
    error the destination of the quoted datagram; an IPv4 victim mapped to ::ffff:a.b.c.d;
    ::ffff:0.0.0.0 otherwise), geo_db_version, asn_db_version,
    source_topic, source_partition, source_offset (the packet batch: provenance and dedup).

Step 7 (PacketBatch version 2) brought a store of an earlier version to these columns without
rewriting a row it need not: ``length`` widened, ``victim`` turned IPv6 (old values mapped,
as CAST does), the new columns added (``caplen`` and ``truncated`` 0, not known, for old rows),
the reserved bit moved from ``ip_flags`` to ``ip_reserved`` in the rows that had it set, and
the IPv6 victims version 1 stored as 0.0.0.0 recovered where the row names them (replies: the
source; an ICMPv6 error's quote was not kept, so those stay unknown).

``day``, ``source`` and ``victim`` have DEFAULT expressions for any writer; the sink sends them
computed the same way with NumPy (:func:`sinks.native.derived_columns`; a test checks both
give the same rows), which spares the engine that work.

Rollups: AggregatingMergeTree tables per hour (``hour DateTime('UTC')``), filled by
materialized views of ``packets``, and per day (``day Date``), filled by views of the hourly
tables (so each dimension makes one pass over the raw rows, not two; deduplication follows
the chain, see :mod:`sinks.store`); ``packets`` is
SimpleAggregateFunction(sum, UInt64) and ``sources`` AggregateFunction(uniq, IPv6): read them
with GROUP BY, ``sum(packets)`` and ``uniqMerge(sources)`` (parts merge eventually)::

    rollup_port_hour / rollup_port_day            (sensor, protocol, dport, service)
    rollup_region_hour / rollup_region_day        (sensor, region, region_name)
    rollup_asn_hour / rollup_asn_day              (sensor, asn, as_org)
    rollup_fp_region_hour / rollup_fp_region_day  (sensor, fingerprint, region, region_name)

``fingerprint`` is one of 'mirai', 'zmap', 'masscan', 'backscatter', 'nmap_syn',
'icmp_echo_scan', one row per bit set in ``fp_flags`` (packets without a flag are not in it).

Plain views that need no state functions::

    daily_ports(day Date, sensor String, protocol UInt8, dport UInt16, service String,
                packets UInt64, sources UInt64)
    daily_regions(day Date, sensor String, region String, region_name String,
                  packets UInt64, sources UInt64)
    daily_mirai(day Date, sensor String, region String, region_name String,
                packets UInt64, sources UInt64)      (packets with the MIRAI bit in fp_flags)

``sensor_health`` — SensorHealth records (ReplacingMergeTree, so a redelivered record
collapses): sensor, ts DateTime64(3,'UTC'), started, source, packets_seen,
packets_dropped_kernel, packets_malformed Map(String, UInt64), packets_out_of_prefix,
packets_sent, batches_sent, send_failed, monitored_addresses, prefixes Array(String), version.

Step 6 adds the CSIRT's tables and views, described where they are defined: the sensor
registry and per-group views (:mod:`sinks.registry`), ``sources_daily`` (:mod:`sinks.sources`),
``source_minutes`` and ``scan_events`` (:mod:`sinks.scans`).

``schema_migrations(version, name, applied_at)`` records the steps applied.

Every MergeTree table keeps the ids of its last inserted blocks
(``non_replicated_deduplication_window``), so an insert retried with the same
``insert_deduplication_token`` is dropped, in ``packets`` and in every rollup.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.fingerprints import Fingerprint
from sinks.registry import REGISTRY_STATEMENTS
from sinks.scans import SCANS_STATEMENTS
from sinks.sources import SOURCES_STATEMENTS

__all__ = [
    "DEDUP_WINDOW",
    "FINGERPRINT_NAMES",
    "ICMP_ERRORS",
    "MIGRATIONS",
    "RAW_PART_SETTINGS",
    "ROLLUP_TABLES",
    "Migration",
    "ttl_statement",
]

DEDUP_WINDOW = 10_000  # block ids remembered per table: far more than a sink ever retries
_DEDUP = f"non_replicated_deduplication_window = {DEDUP_WINDOW}"

# fp_flags bit -> fingerprint name, from the Fingerprint enum (one name per bit).
FINGERPRINT_NAMES: dict[int, str] = {int(bit): str(bit.name).lower() for bit in Fingerprint if bit.name}

_BACKSCATTER = int(Fingerprint.BACKSCATTER)
# ICMP error types whose quoted datagram names the victim (as streams.enrich does).
ICMP_ERRORS = (3, 4, 5, 11, 12)
_ICMP_ERRORS = str(ICMP_ERRORS)
ICMP6_ERRORS = (1, 2, 3, 4)  # ICMPv6 error types, whose quoted datagram names the victim
# The backscatter victim as an IPv6 address (the DEFAULT of ``victim`` since step 7).
_VICTIM = (
    f"if(bitAnd(fp_flags, {_BACKSCATTER}) = 0, toIPv6(toIPv4(0)), "
    f"if(ip_version = 6, if(protocol = 58 AND icmp_type IN {ICMP6_ERRORS} AND inner_protocol != 0, "
    "inner_dst6, src6), "
    f"toIPv6(if(protocol = 1 AND icmp_type IN {_ICMP_ERRORS} AND inner_protocol != 0, inner_dst, src))))"
)

PACKETS = f"""
CREATE TABLE IF NOT EXISTS packets (
    ts DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    day Date DEFAULT toDate(ts),
    sensor LowCardinality(String),
    batch_seq UInt64,
    ip_version UInt8,
    src IPv4,
    dst IPv4,
    src6 IPv6,
    dst6 IPv6,
    source IPv6 DEFAULT if(ip_version = 6, src6, toIPv6(src)),
    protocol UInt8,
    sport UInt16,
    dport UInt16,
    tcp_flags UInt8,
    tcp_seq UInt32,
    tcp_ack UInt32,
    tcp_window UInt16,
    tcp_opt_len UInt8,
    tcp_opt_kinds UInt64,
    tcp_mss UInt16,
    tcp_wscale UInt8,
    ip_id UInt16,
    ttl UInt8,
    ip_flags UInt8,
    frag_offset UInt16,
    length UInt16,
    icmp_type UInt8,
    icmp_code UInt8,
    inner_protocol UInt8,
    inner_src IPv4,
    inner_dst IPv4,
    inner_sport UInt16,
    inner_dport UInt16,
    service LowCardinality(String),
    region LowCardinality(String),
    region_name LowCardinality(String),
    asn UInt32,
    as_org LowCardinality(String),
    fp_flags UInt16,
    fp_verdict UInt16,
    victim IPv4 DEFAULT if(bitAnd(fp_flags, {_BACKSCATTER}) = 0, toIPv4(0),
        if(protocol = 1 AND icmp_type IN {_ICMP_ERRORS} AND inner_protocol != 0, inner_dst, src)),
    geo_db_version LowCardinality(String),
    asn_db_version LowCardinality(String),
    source_topic LowCardinality(String),
    source_partition UInt32,
    source_offset UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (sensor, protocol, dport, ts)
SETTINGS {_DEDUP}
"""


@dataclass(frozen=True)
class _Rollup:
    """One dimension of the rollups: its key columns and how the view selects them."""

    name: str
    keys: list[tuple[str, str]]  # (column, type) after the time column
    select: str  # the key expressions, in order, as the view selects them
    source: str = "packets"  # FROM clause (the fingerprint rollup expands the flag bits)


_FP_BITS = ", ".join(str(b) for b in FINGERPRINT_NAMES)
_FP_LABELS = ", ".join(f"'{n}'" for n in FINGERPRINT_NAMES.values())

_ROLLUPS = [
    _Rollup(
        "port",
        [
            ("sensor", "LowCardinality(String)"),
            ("protocol", "UInt8"),
            ("dport", "UInt16"),
            ("service", "LowCardinality(String)"),
        ],
        "sensor, protocol, dport, service",
    ),
    _Rollup(
        "region",
        [
            ("sensor", "LowCardinality(String)"),
            ("region", "LowCardinality(String)"),
            ("region_name", "LowCardinality(String)"),
        ],
        "sensor, region, region_name",
    ),
    _Rollup(
        "asn",
        [("sensor", "LowCardinality(String)"), ("asn", "UInt32"), ("as_org", "LowCardinality(String)")],
        "sensor, asn, as_org",
    ),
    _Rollup(
        "fp_region",
        [
            ("sensor", "LowCardinality(String)"),
            ("fingerprint", "LowCardinality(String)"),
            ("region", "LowCardinality(String)"),
            ("region_name", "LowCardinality(String)"),
        ],
        f"sensor, transform(bit, [{_FP_BITS}], [{_FP_LABELS}], '') AS fingerprint, region, region_name",
        # One row per bit set; the subquery drops unflagged packets before the arrayJoin.
        source=(
            "(SELECT ts, sensor, region, region_name, source, arrayJoin(bitmaskToArray(fp_flags)) AS bit "
            "FROM packets WHERE fp_flags != 0)"
        ),
    ),
]
_PERIODS = {"hour": ("DateTime('UTC')", "toStartOfHour(ts)"), "day": ("Date", "toDate(ts)")}

ROLLUP_TABLES = [f"rollup_{r.name}_{p}" for r in _ROLLUPS for p in _PERIODS]


def _rollup_ddl(r: _Rollup, period: str) -> list[str]:
    time_type, time_expr = _PERIODS[period]
    table = f"rollup_{r.name}_{period}"
    cols = [f"{period} {time_type}"] + [f"{c} {t}" for c, t in r.keys]
    key = ", ".join([period] + [c for c, _ in r.keys])
    target = (
        f"CREATE TABLE IF NOT EXISTS {table} (\n    "
        + ",\n    ".join(cols)
        + ",\n    packets SimpleAggregateFunction(sum, UInt64),\n"
        + "    sources AggregateFunction(uniq, IPv6)\n)\n"
        + f"ENGINE = AggregatingMergeTree\nPARTITION BY toYYYYMM({period})\nORDER BY ({key})\n"
        + f"SETTINGS {_DEDUP}"
    )
    view = (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {table}_mv TO {table} AS\n"
        f"SELECT {time_expr} AS {period}, {r.select}, toUInt64(count()) AS packets, "
        f"uniqState(source) AS sources\nFROM {r.source}\nGROUP BY {key}"
    )
    return [target, view]


_DAILY_PORTS = """
CREATE VIEW IF NOT EXISTS daily_ports AS
SELECT day, CAST(sensor, 'String') AS sensor, protocol, dport, CAST(service, 'String') AS service,
       toUInt64(sum(packets)) AS packets, uniqMerge(sources) AS sources
FROM rollup_port_day GROUP BY day, sensor, protocol, dport, service
"""
_DAILY_REGIONS = """
CREATE VIEW IF NOT EXISTS daily_regions AS
SELECT day, CAST(sensor, 'String') AS sensor, CAST(region, 'String') AS region,
       CAST(region_name, 'String') AS region_name,
       toUInt64(sum(packets)) AS packets, uniqMerge(sources) AS sources
FROM rollup_region_day GROUP BY day, sensor, region, region_name
"""
_DAILY_MIRAI = """
CREATE VIEW IF NOT EXISTS daily_mirai AS
SELECT day, CAST(sensor, 'String') AS sensor, CAST(region, 'String') AS region,
       CAST(region_name, 'String') AS region_name,
       toUInt64(sum(packets)) AS packets, uniqMerge(sources) AS sources
FROM rollup_fp_region_day WHERE fingerprint = 'mirai' GROUP BY day, sensor, region, region_name
"""


def _day_from_hour_ddl(r: _Rollup) -> list[str]:
    """The daily view of a rollup re-aggregating the hourly rollup's inserted blocks."""
    keys = ", ".join(c for c, _ in r.keys)
    return [
        f"DROP VIEW IF EXISTS rollup_{r.name}_day_mv",
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_{r.name}_day_mv TO rollup_{r.name}_day AS\n"
        f"SELECT toDate(hour) AS day, {keys}, toUInt64(sum(packets)) AS packets, "
        f"uniqMergeState(sources) AS sources\nFROM rollup_{r.name}_hour\nGROUP BY day, {keys}",
    ]


# Raw parts up to this size (uncompressed, ~1.8M rows) are written Compact (one data file) rather
# than Wide (two files and two 1 MB buffers per column): measured, a 200k-row insert into the raw
# table alone takes about a quarter less CPU. Merges write Wide parts above it.
_WIDE_PART_BYTES = 256 * 2**20
RAW_PART_SETTINGS = f"ALTER TABLE packets MODIFY SETTING min_bytes_for_wide_part = {_WIDE_PART_BYTES}"

SENSOR_HEALTH = f"""
CREATE TABLE IF NOT EXISTS sensor_health (
    sensor LowCardinality(String),
    ts DateTime64(3, 'UTC'),
    started DateTime64(3, 'UTC'),
    source String,
    packets_seen UInt64,
    packets_dropped_kernel UInt64,
    packets_malformed Map(String, UInt64),
    packets_out_of_prefix UInt64,
    packets_sent UInt64,
    batches_sent UInt64,
    send_failed UInt64,
    monitored_addresses UInt64,
    prefixes Array(String),
    version String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (sensor, ts, started)
SETTINGS {_DEDUP}
"""


# PacketBatch version 2 (issue 18): IPv6 victims and quotes, 32-bit lengths, truncation.
PACKETS_V2 = [
    "ALTER TABLE packets ADD COLUMN IF NOT EXISTS ip_reserved UInt8 AFTER ip_flags",
    "ALTER TABLE packets ADD COLUMN IF NOT EXISTS caplen UInt32 AFTER length",
    "ALTER TABLE packets ADD COLUMN IF NOT EXISTS truncated UInt8 AFTER caplen",
    "ALTER TABLE packets ADD COLUMN IF NOT EXISTS inner_src6 IPv6 AFTER inner_dst",
    "ALTER TABLE packets ADD COLUMN IF NOT EXISTS inner_dst6 IPv6 AFTER inner_src6",
    # Each ALTER below is one mutation, a pass over the raw table: one for both types (measured
    # 11 s per million rows on chDB, half of two passes), one for both updates.
    f"ALTER TABLE packets MODIFY COLUMN length UInt32, MODIFY COLUMN victim IPv6 DEFAULT {_VICTIM}",
    # Version 1 kept the reserved bit as bit 4 of ip_flags (only rows that had it set), and
    # stored IPv6 victims as 0.0.0.0: where the row tells the victim (a reply, not an ICMPv6
    # error, whose quote version 1 did not keep), it is the source.
    "ALTER TABLE packets UPDATE ip_reserved = 1, ip_flags = bitAnd(ip_flags, 3) "
    "WHERE ip_version = 4 AND bitAnd(ip_flags, 4) != 0, "
    "UPDATE victim = src6 WHERE ip_version = 6 "
    f"AND bitAnd(fp_flags, {_BACKSCATTER}) != 0 AND victim = toIPv6(toIPv4(0)) "
    f"AND NOT (protocol = 58 AND icmp_type IN {ICMP6_ERRORS} AND inner_protocol != 0) "
    "SETTINGS mutations_sync = 2",
    "ALTER TABLE sensor_health ADD COLUMN IF NOT EXISTS packets_truncated UInt64 AFTER packets_out_of_prefix",
]


@dataclass(frozen=True)
class Migration:
    """One schema step: a version number, a name, idempotent statements."""

    version: int
    name: str
    statements: list[str]


MIGRATIONS: list[Migration] = [
    Migration(1, "raw packets table", [PACKETS]),
    Migration(
        2,
        "hourly and daily rollups by port, region, ASN, fingerprint and region",
        [stmt for r in _ROLLUPS for p in _PERIODS for stmt in _rollup_ddl(r, p)],
    ),
    Migration(
        3,
        "analyst views daily_ports, daily_regions, daily_mirai",
        [_DAILY_PORTS, _DAILY_REGIONS, _DAILY_MIRAI],
    ),
    Migration(4, "sensor health", [SENSOR_HEALTH]),
    Migration(
        5,
        "daily rollups from the hourly rollups; raw inserts as compact parts",
        [stmt for r in _ROLLUPS for stmt in _day_from_hour_ddl(r)] + [RAW_PART_SETTINGS],
    ),
    # The CSIRT's tables (sinks.registry, sinks.sources, sinks.scans): sensor groups, per-source
    # activity by day, per-source minutes that scan events are cut from.
    Migration(
        6,
        "sensor registry, group views, sources_daily, source_minutes, scan_events",
        [
            *REGISTRY_STATEMENTS,
            *SOURCES_STATEMENTS,
            *SCANS_STATEMENTS,
        ],
    ),
    Migration(7, "IPv6 victims and quoted addresses, 32-bit lengths, truncation marks", PACKETS_V2),
]

SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32,
    name String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""


def ttl_statement(ttl_days: int) -> str:
    """The ALTER that sets (or, for 0, removes) the raw table's TTL."""
    if ttl_days <= 0:
        return "ALTER TABLE packets REMOVE TTL"
    return f"ALTER TABLE packets MODIFY TTL toDateTime(ts) + INTERVAL {int(ttl_days)} DAY"
