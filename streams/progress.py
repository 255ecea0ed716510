"""What the enrich side knows of each packets partition, without Faust: its event-time
watermark, the last offset processed, when it last spoke, and when it was last reported idle.

A packets partition whose last message is processed (consumer lag zero) and that has been
silent for ``idle_after`` seconds is reported idle to every counts partition, so that windows
close when the input ends: once when it falls silent, then every ``refresh`` seconds for a
worker that takes a counts partition over (a marker per second would fill the counts topic,
and a takeover's re-read, with markers).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["PacketsProgress"]


@dataclass
class PacketsProgress:
    """Per packets partition: watermark, last offset, last seen and last idle report."""

    idle_after: float
    refresh: float = 30.0
    clock: Callable[[], float] = time.monotonic
    watermark: dict[int, int] = field(default_factory=dict)  # ns
    last_offset: dict[int, int] = field(default_factory=dict)
    last_seen: dict[int, float] = field(default_factory=dict)
    idle_sent: dict[int, float] = field(default_factory=dict)
    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = self.clock()

    def batch(self, partition: int, offset: int, newest_ns: int | None) -> int:
        """A batch at ``offset`` was read (``newest_ns``: its latest packet, None when it is
        empty); returns the partition's watermark with it."""
        self.last_offset[partition] = offset
        self.last_seen[partition] = self.clock()
        self.idle_sent.pop(partition, None)
        wm = self.watermark.get(partition, 0)
        if newest_ns is not None and newest_ns > wm:
            wm = self.watermark[partition] = newest_ns
        return wm

    def reassigned(self) -> None:
        """Partitions moved. What was processed here stays true (a partition that stayed is
        re-read from its committed offset: repeats, which the counts partitions skip; one
        that left and comes back has more messages than this worker processed, so it is not
        caught up until it processes them); only the idle reports start again."""
        self.idle_sent.clear()

    def caught_up(self, partition: int, end: int, committed: int | None) -> bool:
        """Whether every message of the partition before ``end`` is processed. For a partition
        nothing was processed from here, only the group's ``committed`` offset tells (the
        consumer's position does not: fetched messages wait in the stream's buffer)."""
        if partition in self.last_offset:
            return self.last_offset[partition] + 1 >= end
        return end == 0 or (committed is not None and committed >= end)

    def idle_due(self, partition: int, caught_up: bool) -> bool:
        """Whether to report the partition idle now (and remember that it was)."""
        now = self.clock()
        quiet = now - self.last_seen.get(partition, self.started) >= self.idle_after
        if not (caught_up and quiet) or now - self.idle_sent.get(partition, -self.refresh) < self.refresh:
            return False
        self.idle_sent[partition] = now
        return True
