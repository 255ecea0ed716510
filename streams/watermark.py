"""The event-time watermark over the packets partitions, with idleness."""

from __future__ import annotations

from typing import Any

__all__ = ["FLUSH", "WatermarkTracker"]

FLUSH = 2**62  # the watermark that closes every window


class WatermarkTracker:
    """Event-time watermark over the source (packets) partitions, with idleness.

    The watermark is the smallest of the per-partition watermarks (largest event time seen
    on each), minus the allowed lateness, and nothing closes until every source partition
    has spoken (data, or an idle marker). A partition is idle when the enrich agent that owns
    it reports it caught up (its last offset processed is the partition's end) and silent
    for a while; an idle partition does not hold the others back. When every partition is
    idle the input has ended (a finished replay, a sensor gone quiet) and the watermark is
    :data:`FLUSH`, which closes every open window. A partition that is idle because it never
    had any data holds the others back until it has some or every partition is idle: it is
    the partition a replay just started, or a worker that joined, has not reached yet, and
    letting the others run ahead would make all its data late. Idleness comes from the enrich side and
    consumer lag, not from this agent's clock, so a worker that is merely slow to process
    its partitions never makes the others' windows close early.
    """

    def __init__(self, partitions: int, lateness_s: int = 60) -> None:
        """Track ``partitions`` source partitions."""
        self.partitions = partitions
        self.lateness_s = lateness_s
        self._wm: dict[int, int] = {}
        self._idle: set[int] = set()
        self._empty: set[int] = set()  # idle, and never had data

    def update(self, partition: int, watermark_ns: int) -> None:
        """Record a source partition's watermark (a partition with data is not idle)."""
        self._idle.discard(partition)
        self._empty.discard(partition)
        if watermark_ns > self._wm.get(partition, -(2**62)):
            self._wm[partition] = watermark_ns

    def set_idle(self, partition: int, empty: bool = False) -> None:
        """The partition is caught up and silent (``empty``: it never had any data)."""
        self._idle.add(partition)
        if empty and partition not in self._wm:
            self._empty.add(partition)

    def current_s(self) -> int | None:
        """The watermark in seconds, or None while nothing can close yet."""
        if len(set(self._wm) | self._idle) < self.partitions:
            return None  # a partition that has not spoken yet may still bring older data
        active = [wm for p, wm in self._wm.items() if p not in self._idle]
        if not active:
            return FLUSH
        if self._empty:
            return None  # a partition without data yet may bring the oldest
        return min(active) // 10**9 - self.lateness_s

    def state(self) -> dict[str, Any]:
        """Per-partition watermarks and idle partitions, for logs."""
        return {"partitions": dict(self._wm), "idle": sorted(self._idle), "empty": sorted(self._empty)}
