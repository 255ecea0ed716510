"""The full names of darkscope's Avro records: one per message kind on the wire.

Every producer and consumer refers to a record by these names (the ``.avsc`` files in this
folder define them; ``tests/schemas`` checks that each name here has its schema)."""

from __future__ import annotations

__all__ = [
    "ALERT",
    "DEAD_LETTER",
    "ENRICHED_BATCH",
    "PACKET_BATCH",
    "PACKET_EVENT",
    "PARTIAL_COUNTS",
    "RECORD_NAMES",
    "SCAN_EVENT",
    "SENSOR_HEALTH",
    "WINDOW_COUNTS",
]

PACKET_BATCH = "darkscope.PacketBatch"  # darkscope.packets: a sensor's columnar batch
PACKET_EVENT = "darkscope.PacketEvent"  # darkscope.packets: one packet (third-party producers)
ENRICHED_BATCH = "darkscope.EnrichedBatch"  # darkscope.enriched
PARTIAL_COUNTS = "darkscope.PartialCounts"  # darkscope.counts
WINDOW_COUNTS = "darkscope.WindowCounts"  # darkscope.windows
ALERT = "darkscope.Alert"  # darkscope.alerts
SENSOR_HEALTH = "darkscope.SensorHealth"  # darkscope.sensors
SCAN_EVENT = "darkscope.ScanEvent"  # darkscope.scans: an ended scan event (darkscope scans publish)
DEAD_LETTER = "darkscope.DeadLetter"  # darkscope.deadletter

RECORD_NAMES = (
    PACKET_BATCH,
    PACKET_EVENT,
    ENRICHED_BATCH,
    PARTIAL_COUNTS,
    WINDOW_COUNTS,
    ALERT,
    SENSOR_HEALTH,
    SCAN_EVENT,
    DEAD_LETTER,
)
