"""The count and merge stages of one app in one process, through their encoded messages, with
no Kafka and no Faust: for tests ("list in, list out") and the stage benchmark.

:class:`LocalCounting` keeps each topic partition as a list of messages, runs a
:class:`streams.shard.ShardCounter` per counts partition and a :class:`streams.merge.WindowMerger`
per kind exactly as the agents do (takeover from the replay points in the table included), and
lets a test hand any counts partition or kind to a new owner between two messages.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.settings import WorkerSettings
from schemas.codec import Codec
from schemas.partials import PartialFrame, decode_frame, encode_frame, idle_marker
from schemas.windowcounts import MAX_ROWS, decode_window_counts, window_counts_frames
from streams.alerts import AlertDetector
from streams.merge import WindowMerger
from streams.shard import ShardCounter, ShardResult, shard_replay_key
from streams.takeover import decode_replay_point, replay_key

if TYPE_CHECKING:
    from schemas.batch import PacketBatch
    from streams.enrich import Enricher

__all__ = ["LocalCounting"]


class ChangelogTable(dict[bytes, bytes]):
    """A dict in the Faust table's place that also keeps what its changelog shows a reader from
    the start: the last value written to each key, also after the key left the table."""

    def __init__(self) -> None:
        super().__init__()
        self.written: dict[bytes, bytes] = {}

    def __setitem__(self, key: bytes, value: bytes) -> None:
        super().__setitem__(key, value)
        self.written[key] = value


@dataclass
class LocalCounting:
    """Counts partitions, windows partitions, their owners and the ``window_counts`` table."""

    settings: WorkerSettings
    shards: int
    packets_partitions: int
    detector: AlertDetector
    codec: Codec = field(default_factory=Codec)
    table: ChangelogTable = field(default_factory=ChangelogTable)
    counts_log: list[list[bytes]] = field(default_factory=list)
    windows_log: list[list[tuple[bytes, bytes]]] = field(default_factory=list)
    counters: dict[int, ShardCounter] = field(default_factory=dict)
    mergers: dict[str, WindowMerger] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    takeovers: list[tuple[str, int]] = field(default_factory=list)  # ("counts"|kind, messages re-read)
    max_rows: int = MAX_ROWS  # rows per WindowCounts message
    keep_log: bool = True  # False: processed messages are dropped (no takeover can re-read them)
    close_every: float = 0.0  # the counts partitions' close throttle (see ShardCounter)
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.counts_log = [[] for _ in range(self.shards)]
        self.windows_log = [[] for _ in range(self.shards)]
        self._counts_at = [0] * self.shards
        self._windows_at = [0] * self.shards

    def windows_partition(self, kind: str) -> int:
        """The windows partition of a kind (any fixed hash of the key does here)."""
        return zlib.crc32(kind.encode()) % self.shards

    def publish(self, frames: list[PartialFrame]) -> None:
        """What the enrich agent sends for one batch: frame ``i`` to counts partition ``i``."""
        for f in frames:
            self.counts_log[f.shard].append(encode_frame(self.codec, f))

    def enrich(self, enricher: Enricher, batch: PacketBatch, offset: int) -> int:
        """What a sensor and the enrich agent do with the batch at ``offset`` of packets
        partition 0: encode and decode it, enrich it, publish its partials; then run. Returns
        its packets."""
        decoded = self.codec.decode_packets(self.codec.encode_batch(batch))
        e = enricher.enrich(decoded, "local", 0, offset)
        self.publish(enricher.frames(e, self.shards, int(decoded["ts"].max())))
        self.run()
        return len(decoded)

    def idle(self, packets_partition: int) -> None:
        """The idle markers of a packets partition, one to every counts partition."""
        for shard in range(self.shards):
            self.counts_log[shard].append(idle_marker(self.codec, packets_partition, shard, self.shards))

    def move_counts(self, shard: int) -> None:
        """Counts partition ``shard`` goes to a new owner (its memory is lost)."""
        self.counters.pop(shard, None)

    def move_kind(self, kind: str) -> None:
        """The kind's windows partition goes to a new owner."""
        self.mergers.pop(kind, None)

    def restart(self, detector: AlertDetector, uncommitted: int = 0) -> None:
        """The worker that owns everything restarts: every counts partition and kind goes to a
        new owner with nothing of the old one's memory, its alert detector included. The last
        ``uncommitted`` messages the old owner merged from each windows partition were not
        committed: the new owner replays up to them and then reads them again as new ones."""
        self.counters.clear()
        self.mergers.clear()
        self.detector = detector
        self._windows_at = [max(0, at - uncommitted) for at in self._windows_at]

    def step_counts(self, shard: int) -> bool:
        """Process the next message of a counts partition; False when there is none."""
        at = self._counts_at[shard]
        if at >= len(self.counts_log[shard]):
            return False
        counter = self.counters.get(shard)
        if counter is None:
            counter = ShardCounter(
                shard,
                self.packets_partitions,
                self.settings.retention,
                self.settings.lateness,
                self.close_every,
                self.clock,
            )
            final_before, start = decode_replay_point(self.table.get(shard_replay_key(shard)), shard)
            frames = [(o, decode_frame(self.codec, self.counts_log[shard][o])) for o in range(start, at)]
            self.takeovers.append(("counts", counter.replay(final_before, frames)))
            self.counters[shard] = counter
        result = counter.count(decode_frame(self.codec, self.counts_log[shard][at]), at)
        if result.replay_point is not None:
            self.table[shard_replay_key(shard)] = result.replay_point
        self._send(shard, result)
        self._counts_at[shard] = at + 1
        if not self.keep_log:
            self.counts_log[shard][at] = b""
        return True

    def _send(self, shard: int, result: ShardResult) -> None:
        if result.watermark is None:
            return
        for rows in result.closed:
            for value in window_counts_frames(
                self.codec,
                shard,
                self.shards,
                result.watermark,
                result.previous,
                rows,
                self.max_rows,
                result.horizon,
            ):
                self.windows_log[self.windows_partition(rows.kind)].append((rows.kind.encode(), value))

    def tick(self) -> None:
        """What the worker's timer does: the closes the counts partitions put off."""
        for shard, counter in self.counters.items():
            result = counter.tick()
            if result is not None:
                self._send(shard, result)

    def step_windows(self, partition: int) -> bool:
        """Process the next message of a windows partition; False when there is none."""
        at = self._windows_at[partition]
        if at >= len(self.windows_log[partition]):
            return False
        key, value = self.windows_log[partition][at]
        kind = key.decode()
        merger = self.mergers.get(kind)
        if merger is None:
            merger = WindowMerger(
                kind, self.shards, self.table, self.detector, self.settings.retention, partition
            )
            final_before, start = decode_replay_point(self.table.get(replay_key(kind)), partition)
            old = [
                (o, decode_window_counts(self.codec, v))
                for o, (k, v) in enumerate(self.windows_log[partition][start:at], start)
                if k == key
            ]
            self.takeovers.append((kind, merger.replay(final_before, old)))
            self.mergers[kind] = merger
        self.alerts += merger.add(decode_window_counts(self.codec, value), at).alerts
        self._windows_at[partition] = at + 1
        if not self.keep_log:
            self.windows_log[partition][at] = (key, b"")
        return True

    def run(self) -> None:
        """Process every message there is, counts partitions first, until nothing is left."""
        busy = True
        while busy:
            busy = False
            for shard in range(self.shards):
                while self.step_counts(shard):
                    busy = True
            for partition in range(self.shards):
                while self.step_windows(partition):
                    busy = True
