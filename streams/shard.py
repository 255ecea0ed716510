"""The first counting stage: one counts partition's windows, without Faust.

Every counts partition receives, for each packet batch, the rows of the addresses routed to it
(:mod:`streams.combiner`). :class:`ShardCounter` merges them into the windows of every kind
(:class:`streams.windows.KindWindows`), closes windows when the watermark over the packets
partitions passes them, and returns the closed windows to send to the merge stage
(:mod:`streams.merge`) with the watermark it reached. It also keeps the counts partition's
replay point (:mod:`streams.takeover`): a worker that takes the partition over rebuilds the
windows that are not final from it, and sends them again; the merge stage takes a window sent
again by the same counts partition as a replacement, so nothing counts twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from schemas.partials import EMPTY, IDLE, KINDS, PartialFrame
from schemas.windowrows import NEVER
from streams.takeover import ReplayPoint
from streams.watermark import FLUSH, WatermarkTracker
from streams.windows import KindWindows, WindowRows

__all__ = ["ShardCounter", "ShardResult", "shard_replay_key"]

logger = logging.getLogger(__name__)


def shard_replay_key(shard: int) -> bytes:
    """Table key of a counts partition's replay point."""
    return f"#counts-{shard}|replay".encode()


@dataclass
class ShardResult:
    """What one partial did: closed windows per kind, the watermark to report (None: nothing
    new to tell the merge stage), the replay point to store, repeats and late packets."""

    closed: list[WindowRows] = field(default_factory=list)
    watermark: int | None = None
    previous: int = NEVER  # the watermark reported before this one
    horizon: int = NEVER  # windows ending at or before it are no longer corrected here
    replay_point: bytes | None = None
    repeat: bool = False
    late: int = 0


class ShardCounter:
    """Windows of every kind over one counts partition's addresses."""

    def __init__(
        self,
        shard: int,
        packets_partitions: int,
        retention_s: int,
        lateness_s: int,
        close_every: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Empty windows; ``packets_partitions`` is the packets topic's partition count.

        Windows are closed at most every ``close_every`` seconds of ``clock`` (and on every
        idle marker): each close costs the same few dozen array operations per kind whatever
        it closes, so a replay that moves the watermark on with every partial closes in larger
        steps; what is closed, and in which order, does not change."""
        self.close_every = close_every
        self.clock = clock
        self._last_close = -float("inf")
        self._due = False  # a close was put off
        self._unsaved: bytes | None = None  # a replay point to store with the next count
        self.shard = shard
        self.windows = {k: KindWindows(k, retention_s) for k in KINDS}
        self.tracker = WatermarkTracker(packets_partitions, lateness_s)
        self.point = ReplayPoint(shard)
        self.reported: int | None = None
        self.repeats = 0
        self.late = 0
        self.packets = 0

    def replay(self, final_before: int, frames: Iterable[tuple[int, PartialFrame]]) -> int:
        """Rebuild the windows that are not final (at or after ``final_before``) from the
        (offset, frame) a previous owner merged since its replay point; returns their number.
        Windows are closed by the next :meth:`count`."""
        self.point.final_before = final_before
        for w in self.windows.values():
            w.final_before = final_before
        n = 0
        for offset, frame in frames:
            self._merge(frame, offset)
            n += 1
        return n

    @property
    def skipped_final(self) -> int:
        """Packets a replay dropped because their windows were final."""
        return sum(w.skipped_final for w in self.windows.values())

    def _merge(self, frame: PartialFrame, offset: int) -> ShardResult:
        """Fold one frame into the windows and the watermark.

        A packet batch enriched twice (its partition moved, or a worker stopped, before the
        offset was committed: Kafka delivers at least once) sends its partials twice; packets
        partitions are read in order, so a partial at or before the newest offset merged from
        its partition is such a repeat, and is skipped."""
        if frame.watermark in (IDLE, EMPTY):
            self.tracker.set_idle(frame.source_partition, frame.watermark == EMPTY)
            self.point.record(offset, None)
            return ShardResult()
        if not self.point.first_time(frame.source_partition, frame.source_offset):
            self.repeats += 1
            self.point.record(offset, None)
            return ShardResult(repeat=True)
        late = 0
        newest: int | None = None
        for p in frame.partials:
            w = self.windows[p.kind]
            before = w.late_packets
            w.add(p)
            late += w.late_packets - before
            if len(p.minute):
                self.packets += p.total_packets if p.kind == "sensor" else 0
                top = int(p.minute.max())
                newest = top if newest is None else max(newest, top)
        self.late += late
        self.tracker.update(frame.source_partition, frame.watermark)
        self.point.record(offset, newest)
        return ShardResult(late=late)

    def count(self, frame: PartialFrame, offset: int) -> ShardResult:
        """Merge the frame at ``offset`` of the counts partition and close the windows the
        watermark passed (unless it closed less than ``close_every`` ago: then :meth:`tick`
        does it); says what to send to the merge stage and what to store."""
        result = self._merge(frame, offset)
        if self.tracker.current_s() is None:
            return result
        marker = frame.watermark in (IDLE, EMPTY)
        if not marker and self.clock() - self._last_close < self.close_every:
            self._due = True
        else:
            self._close(result, marker)
        result.replay_point, self._unsaved = self._unsaved, None
        return result

    def tick(self) -> ShardResult | None:
        """The close that :meth:`count` put off, once ``close_every`` has passed (for a timer:
        windows are not held back until the next message). The replay point it moves is
        stored with the next :meth:`count` (a table is written within an event)."""
        if not self._due or self.clock() - self._last_close < self.close_every:
            return None
        result = ShardResult()
        self._close(result, False)
        return result

    def _close(self, result: ShardResult, repeat: bool) -> None:
        watermark = self.tracker.current_s()
        if watermark is None:
            return
        self._due = False
        self._last_close = self.clock()
        closed = [w.close_until(watermark) for w in self.windows.values()]
        horizons = [w.horizon for w in self.windows.values() if w.max_minute > NEVER]
        if horizons:
            result.horizon = min(horizons)
            point = self.point.advance(min(horizons))
            if point is not None:
                self._unsaved = point
        # Windows close on minute boundaries: a watermark that moved within a minute says
        # nothing new. An idle marker repeats it (a merge stage that took a kind over waits
        # for every counts partition's word).
        if watermark < FLUSH:
            watermark -= watermark % 60
        if any(len(c) for c in closed) or watermark != self.reported or repeat:
            result.closed = closed
            result.previous = self.reported if self.reported is not None else NEVER
            result.watermark = self.reported = watermark
