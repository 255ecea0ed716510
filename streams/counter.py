"""The count agent's work without Faust: partial counts in, table writes and alerts out.

:class:`Counter` holds, per dimension kind, the event-time windows
(:class:`streams.counts.KindWindows`), the watermark over the packets partitions
(:class:`streams.counts.WatermarkTracker`) and the replay point (:mod:`streams.takeover`).
It writes closed windows and replay points into a mapping (the worker passes its Faust
``window_counts`` table; tests pass a dict) and returns the alerts to send. The Faust agent
in :mod:`streams.app` only decodes messages, reads a partition range when it takes a kind
over, and sends what this returns.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from darkscope.settings import WorkerSettings
from streams.alerts import AlertDetector, AlertThresholds
from streams.counts import KindWindows, WatermarkTracker
from streams.enrich import PartialFrame
from streams.takeover import NEVER, ReplayPoint, Takeover, decode_replay_point, published_until, replay_key
from streams.windowstore import MinuteBundles

__all__ = ["IDLE", "CountResult", "Counter", "detector_of"]

logger = logging.getLogger(__name__)

IDLE = -1  # the watermark of a PartialCounts that marks its source partition idle


def detector_of(s: WorkerSettings) -> AlertDetector:
    """The alert detector with the thresholds of the settings."""
    return AlertDetector(
        AlertThresholds(
            window=s.alert_window,
            baseline_windows=s.alert_baseline_windows,
            min_history=s.alert_min_history,
            z_score=s.alert_z_score,
            min_ratio=s.alert_min_ratio,
            min_packets=s.alert_min_packets,
            min_sources=s.alert_min_sources,
            cooldown_windows=s.alert_cooldown_windows,
        )
    )


@dataclass
class CountResult:
    """What one partial did: alerts to send, packets that came too late to count."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    late: int = 0
    repeat: bool = False


class Counter:
    """Windows, watermarks and replay points of the kinds whose counts partitions are ours."""

    def __init__(
        self, settings: WorkerSettings, partitions: int, table: MutableMapping[bytes, bytes]
    ) -> None:
        """Nothing owned yet; ``partitions`` is the packets topic's partition count."""
        self.settings = settings
        self.partitions = partitions
        self.table = table
        self.windows: dict[str, KindWindows] = {}
        self.trackers: dict[str, WatermarkTracker] = {}
        self.replay_points: dict[str, ReplayPoint] = {}
        self.published: dict[str, dict[str, int]] = {}  # kind -> size -> newest window start
        self.minute_bundles = MinuteBundles(table.get)
        self.detector = detector_of(settings)
        self.takeovers: list[Takeover] = []
        self.repeats = 0

    def owns(self, kind: str) -> bool:
        """Whether this worker has taken ``kind`` over (it has counted a partial of it)."""
        return kind in self.replay_points

    def replay_start(self, kind: str, partition: int) -> tuple[int, int]:
        """(final_before, offset) of the kind's replay point in the table, for ``partition``."""
        return decode_replay_point(self.table.get(replay_key(kind)), partition)

    def take_over(
        self,
        kind: str,
        partition: int,
        final_before: int,
        start: int,
        replayed: Iterable[tuple[int, PartialFrame]],
    ) -> Takeover:
        """Own ``kind`` (its counts live in ``partition``): the windows that are not final are
        rebuilt from ``replayed``, the (offset, frame) of its partials from offset ``start``
        (:meth:`replay_start`) up to the one in hand; windows are closed by the next count."""
        published = published_until(self.table, kind)
        windows = KindWindows(kind, self.settings.retention)
        windows.final_before = final_before
        self.windows[kind] = windows
        self.trackers[kind] = WatermarkTracker(self.partitions, self.settings.lateness)
        self.published[kind] = published
        self.replay_points[kind] = ReplayPoint(partition, final_before)
        n = 0
        for offset, frame in replayed:
            self._merge(kind, frame, offset)
            n += 1
        took = Takeover(kind, partition, final_before, start, n, published)
        self.takeovers.append(took)
        if n or final_before != NEVER:
            logger.info(
                "took over %s on counts partition %d: re-read %d partials from offset %d (final before "
                "%d, %d packets already counted), published up to %s",
                kind,
                partition,
                n,
                start,
                final_before,
                windows.skipped_final,
                published,
            )
        return took

    def drop(self, kind: str) -> None:
        """Forget ``kind``: its counts partition went to another worker, which re-reads it."""
        for held in (self.windows, self.trackers, self.replay_points, self.published):
            held.pop(kind, None)
        self.minute_bundles.drop(kind)

    def keep_partitions(self, partitions: set[int]) -> list[str]:
        """Forget the kinds whose counts partition is not in ``partitions``; returns them."""
        gone = [k for k, point in self.replay_points.items() if point.partition not in partitions]
        for kind in gone:
            self.drop(kind)
        return gone

    def _merge(self, kind: str, frame: PartialFrame, offset: int) -> CountResult:
        """Fold one partial into its kind's windows and watermark.

        A packet batch enriched twice (its partition moved, or a worker stopped, before the
        offset was committed: Kafka delivers at least once) sends its partials twice; packets
        partitions are read in order, so a partial at or before the newest offset merged from
        its partition is such a repeat, and is skipped."""
        windows, tracker, point = self.windows[kind], self.trackers[kind], self.replay_points[kind]
        if frame.watermark == IDLE:
            tracker.set_idle(frame.source_partition)
            point.record(offset, None)
            return CountResult()
        if not point.first_time(frame.source_partition, frame.source_offset):
            self.repeats += 1
            point.record(offset, None)
            return CountResult(repeat=True)
        late_before = windows.late_packets
        partial = frame.partial
        windows.add(partial)
        tracker.update(frame.source_partition, frame.watermark)
        point.record(offset, int(partial.minute.max()) if len(partial.minute) else None)
        return CountResult(late=windows.late_packets - late_before)

    def count(self, kind: str, frame: PartialFrame, offset: int) -> CountResult:
        """Merge the partial at ``offset`` of the kind's counts partition (the kind must be
        owned: :meth:`take_over`), close the windows the watermark passed, write them and the
        replay point to the table; returns the alerts they raise."""
        result = self._merge(kind, frame, offset)
        windows = self.windows[kind]
        watermark = self.trackers[kind].current_s()
        if watermark is None:
            return result
        closed_now = windows.close_until(watermark)
        for key, value in self.minute_bundles.writes(closed_now):
            self.table[key] = value
        self.minute_bundles.forget(kind, windows.horizon)
        point = self.replay_points[kind].advance(windows.horizon)
        if point is not None:
            self.table[replay_key(kind)] = point
        published = self.published[kind]
        for closed in closed_now:
            if closed.revision:
                continue  # a late correction: the table holds it, alerts were decided
            raised = self.detector.observe(closed)
            if closed.start > published[closed.size]:  # else closed again after a takeover
                result.alerts += raised
        return result
