"""The packet batches a sink has stored or holds, by where the worker read them: an enriched
batch the worker sent again is dropped instead of stored twice.

The worker's enrich stage is at least once: after a worker restart or a rebalance, the packet
batches it had enriched but not committed are enriched and sent again, at other offsets of the
enriched topic (it is unkeyed), so the sink's own intents (:mod:`sinks.intents`, by enriched
offsets) do not see them as repeats. Every EnrichedBatch carries the packet batch it came from
(``source_topic``, ``source_partition``, ``source_offset``): the sink claims that identity when
it adds the batch to a group, and a second claim is a repeat. ``make faults`` found it: a worker
SIGKILLed mid-stream and restarted left 1,000 of 37,300 packets stored twice.

Memory is bounded: per source partition only the last ``window`` offsets are remembered (a
worker re-sends what it read since its last commit, seconds of input). A claim is released when
its group is dropped before being stored (a revoked partition), so that the next read of that
batch is not taken for a repeat. What this does not see: a repeat that reaches another sink
process, or this one after it restarted (one sink per chDB store is the rule; with a
ClickHouse server and several sinks, such a repeat is stored twice).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Repeats", "SourceKey"]

SourceKey = tuple[str, int, int]  # (source_topic, source_partition, source_offset)


class Repeats:
    """Source batches claimed by this sink, the last ``window`` offsets of each source partition."""

    def __init__(self, window: int = 20_000) -> None:
        """Nothing claimed yet."""
        self.window = window
        self._claimed: dict[tuple[str, int], set[int]] = {}
        self._top: dict[tuple[str, int], int] = {}

    def claim(self, key: SourceKey) -> bool:
        """Claim a source batch: False when it is already claimed (a repeat). Batches without
        provenance (a negative offset) and batches older than the window are always new."""
        topic, partition, offset = key
        if offset < 0:
            return True
        part = (topic, partition)
        seen = self._claimed.setdefault(part, set())
        if offset in seen:
            return False
        seen.add(offset)
        top = max(self._top.get(part, offset), offset)
        self._top[part] = top
        if len(seen) > 2 * self.window:
            self._claimed[part] = {o for o in seen if o > top - self.window}
        return True

    def release(self, keys: Iterable[SourceKey]) -> None:
        """Forget claims whose batches were not stored (their group was dropped)."""
        for topic, partition, offset in keys:
            self._claimed.get((topic, partition), set()).discard(offset)

    def __len__(self) -> int:
        return sum(len(s) for s in self._claimed.values())
