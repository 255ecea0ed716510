"""A sensor: capture (file, stdin, interface or simulator) -> monitored prefixes -> Kafka.

Every packet batch is framed as a columnar PacketBatch and published unkeyed (batches spread
over partitions, DESIGN.md decision 2). Every ``health_interval`` seconds, and at the end, the
sensor publishes a SensorHealth record so that analysts can tell a quiet darknet from a
broken sensor and normalise rates per monitored address.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from core import __version__
from core.publisher import Publisher
from core.settings import KafkaSettings, SensorSettings, TopicNames
from producers.prefixes import MonitoredSpace
from schemas.batch import PacketBatch
from schemas.codec import Codec
from schemas.names import SENSOR_HEALTH

__all__ = ["CaptureCounters", "Sensor", "SensorReport"]

logger = logging.getLogger(__name__)


@dataclass
class CaptureCounters:
    """What the capture side reports: frames read, kernel drops, malformed by reason."""

    frames: int = 0
    kernel_dropped: int = 0
    malformed: Counter[str] = field(default_factory=Counter)


@dataclass
class SensorReport:
    """Totals of one sensor run."""

    source: str
    packets_in: int = 0
    out_of_prefix: int = 0
    batches_queued: int = 0
    packets_sent: int = 0
    batches_sent: int = 0
    send_failed: int = 0
    truncated: int = 0  # accepted packets whose capture cut a header field (the snaplen)
    health_records: int = 0
    capture: CaptureCounters = field(default_factory=CaptureCounters)
    stopped_by_signal: bool = False

    def lines(self) -> list[str]:
        """Readable summary lines for the CLI."""
        bad = ", ".join(f"{k}={v}" for k, v in sorted(self.capture.malformed.items())) or "none"
        return [
            f"source {self.source}: {self.capture.frames} frames read, {self.packets_in} IP packets",
            f"  dropped: {self.out_of_prefix} outside the monitored prefixes, "
            f"{self.capture.kernel_dropped} by the kernel; malformed/skipped: {bad}",
            f"  sent: {self.packets_sent} packets in {self.batches_sent} batches acknowledged by Kafka, "
            f"{self.send_failed} failed; {self.health_records} health records",
        ]


class Sensor:
    """Publishes batches from one source; ``stop()`` (e.g. from a signal handler) ends a run."""

    def __init__(
        self,
        settings: SensorSettings,
        kafka: KafkaSettings,
        topics: TopicNames,
        publisher: Publisher | None = None,
        codec: Codec | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """A sensor publishing with ``publisher`` (default: one for ``kafka.bootstrap``)."""
        self.settings = settings
        self.topics = topics
        self.space = MonitoredSpace(settings.prefixes)
        self.publisher = publisher or Publisher(kafka.bootstrap)
        self.codec = codec or Codec()
        self._clock = clock
        self._sleep = sleep
        self._stop = False
        self._seq = 0
        self._base = (0, 0, 0, 0)
        self.started = datetime.now(tz=UTC)
        if not self.space.networks:
            logger.warning(
                "no monitored prefixes configured: every destination is accepted and "
                "rates cannot be normalised per address (set DARKSCOPE_SENSOR_PREFIXES)"
            )

    def stop(self) -> None:
        """End the current run after the batch in hand (flushes and reports as usual)."""
        self._stop = True

    def run(
        self,
        batches: Iterable[PacketBatch],
        source: str,
        counters: Callable[[], CaptureCounters] | None = None,
        realtime: bool = False,
    ) -> SensorReport:
        """Publish every batch, then flush; returns what happened."""
        report = SensorReport(source)
        st = self.publisher.stats
        # The publisher's counters are cumulative over runs; a report counts this run only.
        self._base = (
            st.packets_sent,
            st.sent_by_topic.get(self.topics.packets, 0),
            st.packets_failed,
            st.sent_by_topic.get(self.topics.sensors, 0),
        )
        counters = counters or CaptureCounters
        last_health = self._clock()
        t_wall0: float | None = None
        t_cap0 = 0
        for captured in batches:
            if self._stop:
                report.stopped_by_signal = True
                break
            if not len(captured):
                continue
            report.packets_in += len(captured)
            inside = self.space.contains(captured)
            n_out = int(np.count_nonzero(~inside))
            batch = captured
            if n_out:
                report.out_of_prefix += n_out
                batch = captured.take(inside)
            report.truncated += int(np.count_nonzero(batch["truncated"]))
            for part in self._split(batch, realtime):
                if realtime:
                    first = int(part["ts"][0])
                    if t_wall0 is None:
                        t_wall0, t_cap0 = self._clock(), first
                    wait = (first - t_cap0) / 1e9 - (self._clock() - t_wall0)
                    if wait > 0:
                        self._sleep(wait)
                self._publish(part, report)
            if self._clock() - last_health >= self.settings.health_interval:
                self._health(report, counters(), source)
                last_health = self._clock()
        self.publisher.flush()
        self._collect(report)
        report.capture = counters()
        self._health(report, report.capture, source)
        self.publisher.flush()
        self._collect(report)
        return report

    def _split(self, batch: PacketBatch, realtime: bool) -> list[PacketBatch]:
        """Slices of at most batch_size packets (and of ``linger`` capture seconds in realtime)."""
        n, size = len(batch), self.settings.batch_size
        if not n:
            return []  # every packet was outside the monitored prefixes
        cuts = list(range(0, n, size))
        if realtime:
            bucket = (batch["ts"] // int(self.settings.linger * 1e9)).astype(np.int64)
            edges = np.flatnonzero(np.diff(bucket)) + 1
            cuts = sorted(set(cuts) | set(edges.tolist()))
        return [batch.slice(a, b) for a, b in zip(cuts, [*cuts[1:], n], strict=True) if b > a]

    def _publish(self, batch: PacketBatch, report: SensorReport) -> None:
        out = PacketBatch(self.settings.sensor_id, self._seq, batch.columns)
        self._seq += 1
        self.publisher.send(self.topics.packets, self.codec.encode_batch(out), packets=len(out))
        report.batches_queued += 1

    def _collect(self, report: SensorReport) -> None:
        st = self.publisher.stats
        base = self._base
        report.packets_sent = st.packets_sent - base[0]
        report.batches_sent = st.sent_by_topic.get(self.topics.packets, 0) - base[1]
        report.send_failed = st.packets_failed - base[2]
        report.health_records = st.sent_by_topic.get(self.topics.sensors, 0) - base[3]

    def _health(self, report: SensorReport, cap: CaptureCounters, source: str) -> None:
        self._collect(report)
        record = {
            "sensor_id": self.settings.sensor_id,
            "ts": datetime.now(tz=UTC),
            "started": self.started,
            "source": source,
            "packets_seen": report.packets_in,
            "packets_dropped_kernel": cap.kernel_dropped,
            "packets_malformed": dict(cap.malformed),
            "packets_out_of_prefix": report.out_of_prefix,
            "packets_truncated": report.truncated,
            "packets_sent": report.packets_sent,
            "batches_sent": report.batches_sent,
            "send_failed": report.send_failed,
            # An Avro long: an IPv6 /64 or wider (2^64 addresses and more) is reported as 2^63 - 1.
            "monitored_addresses": min(self.space.address_count, 2**63 - 1),
            "prefixes": [str(n) for n in self.space.networks],
            "version": __version__,
        }
        self.publisher.send(
            self.topics.sensors,
            self.codec.encode(SENSOR_HEALTH, record),
            packets=0,
            key=self.settings.sensor_id.encode(),
        )
