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

__all__ = ["CountBacklog", "PacketsProgress"]


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
    checked: float = 0.0  # when the idle check last saw the broker

    def __post_init__(self) -> None:
        self.started = self.checked = self.clock()

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

    def looked(self, blind_after: float) -> bool:
        """The idle check ran and saw the broker; False when it had not for ``blind_after``
        seconds (the broker down or unreachable, the timer blocked): silence while the worker
        could not see is no proof that a sensor has stopped (its producer holds what it could
        not send, and delivers it once the broker is back), so every partition must be quiet
        for ``idle_after`` again from now before it is reported idle."""
        now = self.clock()
        blind = now - self.checked > blind_after
        self.checked = now
        if blind:
            self.started = now
            self.last_seen = dict.fromkeys(self.last_seen, now)
        return not blind

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


@dataclass
class CountBacklog:
    """How far this worker's counting stands behind its enrichment, in packet batches.

    For a packets partition ``p`` and a counts partition ``q`` that the same worker owns, every
    partial on ``q`` from ``p`` was sent by this worker's enrich agent, so the batches enriched
    from ``p`` but not yet counted on ``q`` are the offsets between the two. The enrich agent
    waits while, on some counts partition, the gaps add up to more than ``limit``: counting
    keeps pace with enrichment (windows close, alerts leave and memory is released as the
    stream goes, not in one burst after a backlog is read), and the worker's two stages share
    its one event loop fairly.
    Pairs owned by different workers are not measured (each worker paces its own)."""

    limit: int = 16
    enriched: dict[int, int] = field(default_factory=dict)  # packets partition -> last offset
    first: dict[int, int] = field(default_factory=dict)  # packets partition -> first offset
    counted: dict[int, dict[int, int]] = field(default_factory=dict)  # q -> p -> last offset

    def was_enriched(self, partition: int, offset: int) -> None:
        """The enrich agent sent the partials of batch ``offset`` of ``partition``."""
        self.enriched[partition] = max(offset, self.enriched.get(partition, -1))
        self.first.setdefault(partition, offset)

    def was_counted(self, shard: int, partition: int, offset: int) -> None:
        """Counts partition ``shard`` counted the partial of that batch."""
        seen = self.counted.setdefault(shard, {})
        seen[partition] = max(offset, seen.get(partition, -1))

    def forget(self, packets: set[int], shards: set[int]) -> None:
        """Keep only the partitions this worker still owns (after a rebalance)."""
        self.enriched = {p: o for p, o in self.enriched.items() if p in packets}
        self.first = {p: o for p, o in self.first.items() if p in packets}
        self.counted = {q: c for q, c in self.counted.items() if q in shards}

    def behind(self) -> int:
        """Batches enriched here and not yet counted, on the counts partition furthest behind
        (0: none, or no pair owned here)."""
        gap = 0
        for seen in self.counted.values():
            gap = max(gap, sum(last - seen.get(p, self.first[p] - 1) for p, last in self.enriched.items()))
        return gap

    def too_far(self) -> bool:
        """Whether the enrich agent should wait for counting."""
        return self.behind() > self.limit
