"""Publish ended scan events on ``darkscope.scans`` (Avro ``ScanEvent``), each once, in order.

The store cuts scan events at query time (``scan_events(idle=S)``, see ``sinks.scans``); a SOC
wants them where it already looks, as messages. An event is published once it has *ended*:
its last packet is more than ``idle`` seconds before the newest packet stored, so no packet in
the store can extend it any more. Which events were published is one number, the *mark*
(``scan_events_published.end_before``): every event that ended before it is on the topic. A run
publishes the events ending in ``[mark, newest - idle)``, flushes the producer, and only then
stores the new mark: a crash in between publishes those events again on the next run (at least
once); a repeat carries the same ``id`` (source, protocol, start), so a consumer can drop it.

The mark is kept with nanoseconds as ClickHouse gives it (read and written as text), so a run
with no new packets publishes nothing. A packet stored late, older than the mark, does not
reopen a published event; one that extends a not yet published event just extends it. The
mark is a time, not a cut: after a change of the idle timeout, the events ending after the mark
are published as the new timeout cuts them.

Each run cuts every event again (the view has no state): measured on 1,000,000 packets of 50,000
sources over a week in chDB, 12.5 s for the first run (443,418 events encoded and sent to a fake
producer), 2.3 s for a run after one new packet, no query at all when nothing new was stored.

Faust-free, and the producer is anything with ``send``/``flush``/``stats`` (core.publisher's
Publisher, or a fake in a unit test).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from core.errors import BrokerError
from core.publisher import DeliveryStats
from schemas.codec import Codec
from schemas.names import SCAN_EVENT
from sinks.scans import MIN_IDLE

__all__ = ["PUBLISHED_TABLE", "PublishRun", "event_id", "publish_ended"]

logger = logging.getLogger(__name__)

# One row per run that published; the mark is the largest end_before.
PUBLISHED_TABLE = """
CREATE TABLE IF NOT EXISTS scan_events_published (
    end_before DateTime64(9, 'UTC'),
    idle UInt32,
    published UInt64,
    at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY end_before
"""
_EPOCH = "1970-01-01 00:00:00.000000000"
_EPOCH_DT = datetime(1970, 1, 1, tzinfo=UTC)

# Region: the one of most of the source's packets on the event's first day (sources_daily);
# sensors: those that saw the source that day. The minutes behind the events hold only numbers.
_EVENTS = """
SELECT toString(e.source), e.protocol, e.start, e.end, e.packets, e.destinations, e.ports,
       e.fp_flags, e.fp_verdict, e.asn, d.region, d.sensors
FROM (
    SELECT source, protocol, start, end, packets, destinations, ports, fp_flags, fp_verdict, asn
    FROM scan_events(idle = %(idle)s)
    WHERE end >= toDateTime64(%(after)s, 9, 'UTC') AND end < toDateTime64(%(before)s, 9, 'UTC')
) AS e
LEFT JOIN (
    SELECT day, source, argMax(region, p) AS region, arraySort(groupUniqArray(sensor)) AS sensors
    FROM (
        SELECT day, source, region, sensor, sum(packets) AS p FROM sources_daily
        WHERE day <= toDate(toDateTime64(%(before)s, 9, 'UTC'))
        GROUP BY day, source, region, sensor
    )
    GROUP BY day, source
) AS d ON d.source = e.source AND d.day = toDate(e.start)
ORDER BY e.end, e.source, e.protocol
"""


class _Store(Protocol):
    client: Any

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any: ...


class _Sender(Protocol):
    stats: DeliveryStats

    def send(self, topic: str, value: bytes, packets: int = 1, key: bytes | None = None) -> None: ...

    def flush(self, timeout: float = 60.0) -> None: ...


@dataclass(frozen=True)
class PublishRun:
    """What one run did: events published, and the mark before and after it (ClickHouse text,
    nanoseconds; ``after`` equals ``before`` when nothing had ended since)."""

    published: int
    mark_before: str
    mark_after: str

    @property
    def ended_before(self) -> datetime | None:
        """The new mark as a datetime (to the microsecond), None while nothing was published."""
        if self.mark_after == _EPOCH:
            return None
        return datetime.fromisoformat(self.mark_after[:26]).replace(tzinfo=UTC)


def event_id(source: str, protocol: int, start_ms: int) -> str:
    """The id a repeat of the same event carries: source, protocol and start (epoch ms)."""
    return f"{source}/{protocol}/{start_ms}"


def publish_ended(
    store: _Store, publisher: _Sender, topic: str, idle: int, codec: Codec | None = None
) -> PublishRun:
    """Publish the scan events that ended since the last run; store the new mark once the
    producer has flushed with no failure (BrokerError otherwise, the mark unchanged)."""
    idle = max(int(idle), MIN_IDLE)
    codec = codec or Codec()
    store.client.command(PUBLISHED_TABLE)
    after = _text(store, "SELECT toString(max(end_before)) FROM scan_events_published")
    newest = store.query("SELECT count(), toString(max(last_seen)) FROM source_minutes").result_rows[0]
    if not int(newest[0]):
        return PublishRun(0, after, after)
    before = _text(
        store,
        "SELECT toString(toDateTime64(%(newest)s, 9, 'UTC') - toIntervalSecond(%(idle)s))",
        {"newest": str(newest[1]), "idle": idle},
    )
    if before <= after:  # same format, so text order is time order
        return PublishRun(0, after, after)
    rows = store.query(_EVENTS, {"idle": idle, "after": after, "before": before}).result_rows
    failed = publisher.stats.messages_failed
    for row in rows:
        record = _record(row, idle)
        publisher.send(topic, codec.encode(SCAN_EVENT, record), key=record["source"].encode())
    publisher.flush()
    if publisher.stats.messages_failed != failed:
        raise BrokerError(
            f"{publisher.stats.messages_failed - failed} scan events not acknowledged by {topic}: "
            "the mark stays, the next run publishes them again"
        )
    store.client.command(
        "INSERT INTO scan_events_published SELECT toDateTime64(%(before)s, 9, 'UTC'), %(idle)s, "
        "%(n)s, now64(3)",
        parameters={"before": before, "idle": idle, "n": len(rows)},
    )
    logger.info("published %d scan events ending in [%s, %s) on %s", len(rows), after, before, topic)
    return PublishRun(len(rows), after, before)


def _text(store: _Store, sql: str, parameters: Mapping[str, Any] | None = None) -> str:
    return str(store.query(sql, parameters).result_rows[0][0])


def _record(row: tuple[Any, ...], idle: int) -> dict[str, Any]:
    source, protocol, start, end, packets, dsts, ports, flags, verdict, asn, region, sensors = row
    source = _address(str(source))
    start_ms, end_ms = _millis(start), _millis(end)
    return {
        "id": event_id(source, int(protocol), start_ms),
        "source": source,
        "protocol": int(protocol),
        "start": _EPOCH_DT + timedelta(milliseconds=start_ms),
        "end": _EPOCH_DT + timedelta(milliseconds=end_ms),
        "packets": int(packets),
        "destinations": int(dsts),
        "ports": int(ports),
        "fp_flags": int(flags),
        "fp_verdict": int(verdict),
        "sensors": [str(s) for s in sensors or []],
        "region": str(region or ""),
        "asn": int(asn),
        "idle": idle,
    }


def _millis(value: datetime) -> int:
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return (aware - _EPOCH_DT) // timedelta(milliseconds=1)


def _address(text: str) -> str:
    """'::ffff:1.2.3.4' -> '1.2.3.4' (IPv4 sources are stored mapped)."""
    return text[7:] if text.startswith("::ffff:") and "." in text else text
