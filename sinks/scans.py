"""Scan events in the style of Merit's darknet-events: a source's activity on one protocol,
from its first packet until it has been silent for an idle timeout.

A day-by-day table cuts a scan that runs over midnight in two and merges two scans of one day
into one; an analyst asking "which scans started today" wants events. Packets are kept per
source, protocol and minute as the sink stores them (``source_minutes``, a materialized view
of ``packets``, deduplicated with the raw insert), and the events are cut from those minutes at
query time by the parameterized view ``scan_events(idle=SECONDS)``, so the idle timeout is a
query parameter (``DARKSCOPE_SINK_SCAN_IDLE`` is what ``darkscope scans`` uses)::

    source_minutes (AggregatingMergeTree, ORDER BY (source, protocol, minute))
        minute DateTime('UTC'), source IPv6, protocol UInt8, packets, first_seen, last_seen,
        fp_flags, fp_verdict (groupBitOr), asn (any), destinations and ports (uniq states)

    scan_events(idle=600): source, protocol, event (1, 2, ... per source and protocol),
        start, end (DateTime64(9)), seconds, packets, destinations, ports, fp_flags,
        fp_verdict, asn, open (1 while the newest stored packet is less than ``idle``
        seconds after the event's end: it may still go on)

The minutes hold only numbers: each string or array column a view adds is paid on every insert
(sensors, region and AS name per minute made an insert about 40% slower, measured); a
scan's region and organisation are in ``sources_daily`` under its source and day.

Within a minute no gap is longer than 60 s, so events are exact for an idle timeout of at least
a minute: a new event starts where a source's next active minute begins more than ``idle``
seconds after the previous one's last packet. ``SELECT * FROM scan_events(idle=600) WHERE
toDate(start) = today()`` lists the scans that started today.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

__all__ = ["MIN_IDLE", "SCANS_STATEMENTS", "ScanEvent", "scan_events"]

MIN_IDLE = 60  # seconds: below a minute the per-minute rows would hide gaps

SOURCE_MINUTES = """
CREATE TABLE IF NOT EXISTS source_minutes (
    minute DateTime('UTC'),
    source IPv6,
    protocol UInt8,
    packets SimpleAggregateFunction(sum, UInt64),
    first_seen SimpleAggregateFunction(min, DateTime64(9, 'UTC')),
    last_seen SimpleAggregateFunction(max, DateTime64(9, 'UTC')),
    fp_flags SimpleAggregateFunction(groupBitOr, UInt16),
    fp_verdict SimpleAggregateFunction(groupBitOr, UInt16),
    asn SimpleAggregateFunction(any, UInt32),
    destinations AggregateFunction(uniq, IPv6),
    ports AggregateFunction(uniq, UInt16)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (source, protocol, minute)
SETTINGS non_replicated_deduplication_window = 10000
"""
SOURCE_MINUTES_MV = """
CREATE MATERIALIZED VIEW IF NOT EXISTS source_minutes_mv TO source_minutes AS
SELECT toStartOfMinute(ts) AS minute, source, protocol, toUInt64(count()) AS packets,
       min(ts) AS first_seen, max(ts) AS last_seen,
       groupBitOr(fp_flags) AS fp_flags, groupBitOr(fp_verdict) AS fp_verdict, any(asn) AS asn,
       uniqState(if(ip_version = 6, dst6, toIPv6(dst))) AS destinations, uniqState(dport) AS ports
FROM packets
GROUP BY minute, source, protocol
"""
# Minutes merged first (parts merge eventually), then numbered into events by a running sum of
# "this minute starts a new event", then each event's states merged.
SCAN_EVENTS = """
CREATE VIEW IF NOT EXISTS scan_events AS
SELECT source, protocol, event, min(first_seen) AS start, max(last_seen) AS end,
       dateDiff('second', start, end) AS seconds, toUInt64(sum(packets)) AS packets,
       uniqMerge(destinations) AS destinations, uniqMerge(ports) AS ports,
       groupBitOr(fp_flags) AS fp_flags, groupBitOr(fp_verdict) AS fp_verdict, any(asn) AS asn,
       toUInt8(dateDiff('second', end, (SELECT max(last_seen) FROM source_minutes)) < {idle:UInt32}) AS open
FROM (
    SELECT *, sum(starts) OVER (PARTITION BY source, protocol ORDER BY minute
                                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS event
    FROM (
        SELECT *, toUInt32(row_number() OVER w = 1
                  OR dateDiff('second', lagInFrame(last_seen) OVER w, first_seen) > {idle:UInt32}) AS starts
        FROM (
            SELECT minute, source, protocol, sum(packets) AS packets, min(first_seen) AS first_seen,
                   max(last_seen) AS last_seen, groupBitOr(fp_flags) AS fp_flags,
                   groupBitOr(fp_verdict) AS fp_verdict, any(asn) AS asn,
                   uniqMergeState(destinations) AS destinations, uniqMergeState(ports) AS ports
            FROM source_minutes GROUP BY minute, source, protocol
        )
        WINDOW w AS (PARTITION BY source, protocol ORDER BY minute ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
    )
)
GROUP BY source, protocol, event
"""

SCANS_STATEMENTS = [SOURCE_MINUTES, SOURCE_MINUTES_MV, SCAN_EVENTS]


@dataclass(frozen=True)
class ScanEvent:
    """One scan: a source's activity on one protocol until it fell silent."""

    source: str
    protocol: int
    start: datetime
    end: datetime
    packets: int
    destinations: int
    ports: int
    fp_flags: int
    fp_verdict: int
    asn: int
    open: bool


class _Queryable(Protocol):
    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any: ...


def scan_events(
    store: _Queryable, idle: int, since: datetime, until: datetime, min_packets: int = 1
) -> list[ScanEvent]:
    """The scans that started in ``[since, until)``, cut at silences longer than ``idle`` seconds,
    with at least ``min_packets`` packets."""
    rows = store.query(
        "SELECT toString(source), protocol, start, end, packets, destinations, ports, fp_flags, fp_verdict, "
        "asn, open FROM scan_events(idle = %(idle)s) WHERE start >= %(since)s AND start < %(until)s "
        "AND packets >= %(min_packets)s ORDER BY start, source, protocol",
        {"idle": max(int(idle), MIN_IDLE), "since": since, "until": until, "min_packets": int(min_packets)},
    ).result_rows
    return [
        ScanEvent(
            _address(s),
            int(p),
            _utc(a),
            _utc(b),
            int(n),
            int(d),
            int(k),
            int(f),
            int(v),
            int(asn),
            bool(o),
        )
        for s, p, a, b, n, d, k, f, v, asn, o in rows
    ]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _address(text: str) -> str:
    """'::ffff:1.2.3.4' -> '1.2.3.4' (IPv4 sources are stored mapped)."""
    return text[7:] if text.startswith("::ffff:") and "." in text else text
