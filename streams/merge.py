"""The second counting stage: a kind's windows summed over the counts partitions.

Each counts partition counts a disjoint set of addresses (:mod:`streams.combiner`), so a
window's exact packets and unique addresses are the sums of what the partitions counted. The
counts partitions send their closed windows, with the watermark each has reached, to
darkscope.windows keyed by kind (the WindowCounts record, :func:`encode_window_counts`);
:class:`WindowMerger` holds one kind's windows until every counts partition has passed them,
adds them up, writes them to the ``window_counts`` table (:mod:`streams.windowstore`) and runs
the alert rules on them: this is where the rules that need the global view (a port entering
the top 10) see every packet.

A window a counts partition sends again replaces what that partition sent before (a new owner
re-closes the windows it rebuilt; a late packet corrects one), so a replay counts nothing
twice. A correction of a published window is published again with the next ``revision`` and
raises no alert. The merger keeps the windows it published for ``retention`` seconds of event
time for those corrections, then forgets them.

Its own takeover works like the counts partitions' (:mod:`streams.takeover`): a replay point
in the table (``kind|replay``) says from which offset of the windows partition a new owner
re-reads the kind's messages; windows the table already holds raise no alert again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from schemas.windowcounts import WindowCounts
from schemas.windowrows import MINUTE, NEVER, SIZES, WindowRows
from streams.alerts import SURGE_KINDS, AlertDetector
from streams.takeover import ReplayPoint, episodes_key, published_until, replay_key, window_keys
from streams.watermark import FLUSH
from streams.windows import ValueIds
from streams.windowstore import MinuteBundles

__all__ = ["MergeResult", "WindowMerger"]

logger = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]


@dataclass
class _Chunk:
    """Rows of one counts partition, value ids in the merger's dictionary."""

    size: npt.NDArray[np.uint8]
    start: I64
    vid: npt.NDArray[np.uint32]
    packets: I64
    sources: I64
    first: int = 0  # earliest and latest window start (set on creation)
    last: int = 0

    def __post_init__(self) -> None:
        if len(self.start):
            self.first, self.last = int(self.start.min()), int(self.start.max())

    @property
    def end(self) -> I64:
        return self.start + np.where(self.size == MINUTE, 60, 3600)

    @property
    def key(self) -> I64:
        """(start, size) as one sortable integer."""
        return self.start * 2 + self.size

    def select(self, rows: npt.NDArray[Any]) -> _Chunk:
        return _Chunk(
            self.size[rows], self.start[rows], self.vid[rows], self.packets[rows], self.sources[rows]
        )

    def renumbered(self, remap: npt.NDArray[np.uint32]) -> _Chunk:
        """The same rows with value ids mapped through ``remap``."""
        return _Chunk(self.size, self.start, remap[self.vid], self.packets, self.sources)

    def __len__(self) -> int:
        return len(self.start)


def _empty() -> _Chunk:
    i = np.zeros(0, np.int64)
    return _Chunk(np.zeros(0, np.uint8), i, np.zeros(0, np.uint32), i, i)


def _concat(chunks: Sequence[_Chunk]) -> _Chunk:
    if len(chunks) == 1:
        return chunks[0]
    return _Chunk(
        np.concatenate([c.size for c in chunks]),
        np.concatenate([c.start for c in chunks]),
        np.concatenate([c.vid for c in chunks]),
        np.concatenate([c.packets for c in chunks]),
        np.concatenate([c.sources for c in chunks]),
    )


def _sum(chunk: _Chunk) -> _Chunk:
    """Rows of the same (size, start, value) added up; sorted by size, start and value."""
    if not len(chunk):
        return chunk
    order = np.lexsort((chunk.vid, chunk.start, chunk.size))
    c = chunk.select(order)
    first = np.ones(len(c), dtype=bool)
    first[1:] = (c.size[1:] != c.size[:-1]) | (c.start[1:] != c.start[:-1]) | (c.vid[1:] != c.vid[:-1])
    starts = np.flatnonzero(first)
    return _Chunk(
        c.size[starts],
        c.start[starts],
        c.vid[starts],
        np.add.reduceat(c.packets, starts),
        np.add.reduceat(c.sources, starts),
    )


@dataclass
class MergeResult:
    """What one WindowCounts message did: alerts to send, windows published and corrected."""

    alerts: list[dict[str, Any]]
    published: int = 0
    corrected: int = 0
    too_late: int = 0


class WindowMerger:
    """One kind's windows from every counts partition, added up and published."""

    def __init__(
        self,
        kind: str,
        shards: int,
        table: MutableMapping[bytes, bytes],
        detector: AlertDetector,
        retention_s: int,
        partition: int = 0,
    ) -> None:
        """Nothing merged yet; ``partition`` is the windows partition the kind lives in."""
        self.kind = kind
        self.shards = shards
        self.table = table
        self.detector = detector
        self.retention_s = retention_s
        self.dictionary = ValueIds()
        self.shard_wm: dict[int, int] = {}
        self.shard_horizon: dict[int, int] = {}  # what each counts partition can still correct
        self._pending: dict[int, list[_Chunk]] = {}
        self._published: dict[int, list[_Chunk]] = {}
        self._revision: dict[int, int] = {}  # window key -> revision of a corrected window
        self.last_end = NEVER  # every window ending at or before this is published
        self._forgot = NEVER
        self.final_before = NEVER  # windows before this were published by a previous owner
        self.point = ReplayPoint(partition)
        self.bundles = MinuteBundles(table.get)
        # The table keys of this kind's windows (an hour window, or an hour of minute windows)
        # with the end of the hour they cover: deleted once no counts partition can correct
        # them, so the table (in memory) holds the retention, not every window ever closed.
        self._keys: dict[bytes, int] = {}
        self.published_until = {"1m": NEVER, "1h": NEVER}
        self.episodes_closed_until = NEVER  # episodes that ended before this were closed
        self.published_windows = 0
        self.corrections = 0
        self.too_late = 0
        self.compactions = 0  # times the dictionary let go of values no window uses

    # -- takeover -----------------------------------------------------------------------------

    def replay(self, final_before: int, messages: Iterable[tuple[int, WindowCounts]]) -> int:
        """Rebuild from the (offset, message) a previous owner merged since its replay point:
        windows before ``final_before`` are final, and windows the table holds raise no alert
        again. Returns the number of messages re-read."""
        self.final_before = self.point.final_before = final_before
        self.published_until = published_until(self.table, self.kind)
        self.episodes_closed_until = int(self.table.get(episodes_key(self.kind), b"%d" % NEVER))
        self._keys.update(window_keys(self.table, self.kind))
        n = 0
        for offset, msg in messages:
            self.add(msg, offset)
            n += 1
        return n

    # -- merging ------------------------------------------------------------------------------

    def add(self, msg: WindowCounts, offset: int) -> MergeResult:
        """Merge one counts partition's message at ``offset``; publish what every counts
        partition has passed; returns the alerts to send."""
        rows = msg.rows
        ids = self.dictionary.ids(rows.values)
        chunk = _Chunk(
            rows.size, rows.start, ids[rows.vid] if len(rows) else rows.vid, rows.packets, rows.sources
        )
        if self.final_before > NEVER and len(chunk):
            chunk = chunk.select(chunk.start >= self.final_before)
        self.point.record(offset, int(chunk.start.max()) if len(chunk) else None)
        result = MergeResult([])
        if len(chunk):
            late = chunk.end <= self.last_end
            if late.any():
                result.corrected, result.too_late = self._correct(msg.shard, chunk.select(late))
                chunk = chunk.select(~late)
            if len(chunk):
                self._put(self._pending, msg.shard, chunk)
        self.shard_wm[msg.shard] = msg.watermark
        self.shard_horizon[msg.shard] = max(self.shard_horizon.get(msg.shard, NEVER), msg.horizon)
        self._publish(result)
        return result

    @staticmethod
    def _put(store: dict[int, list[_Chunk]], shard: int, chunk: _Chunk) -> None:
        """Add a counts partition's rows, replacing the windows it sent before."""
        chunks = store.setdefault(shard, [])
        if any(c.last >= chunk.first for c in chunks):
            keys = np.unique(chunk.key)
            chunks[:] = [c.select(~np.isin(c.key, keys)) for c in chunks]
            chunks[:] = [c for c in chunks if len(c)]
        chunks.append(chunk)

    def _publish(self, result: MergeResult) -> None:
        if len(self.shard_wm) < self.shards:
            return
        watermark = min(self.shard_wm.values())
        if watermark <= self.last_end:
            return
        ready: list[tuple[int, _Chunk]] = []
        for shard, chunks in self._pending.items():
            keep = []
            for c in chunks:
                due = c.end <= watermark
                if due.all():
                    ready.append((shard, c))
                elif due.any():
                    ready.append((shard, c.select(due)))
                    keep.append(c.select(~due))
                else:
                    keep.append(c)
            chunks[:] = keep
        if ready:
            merged = _sum(_concat([c for _, c in ready]))
            result.alerts += self._emit(merged, first_time=True)
            result.published += _count_windows(merged)
            for shard, c in ready:
                self._published.setdefault(shard, []).append(c)
            newest = int(merged.end.max())
        else:
            newest = self.last_end
        self.last_end = watermark if watermark < FLUSH else max(self.last_end, newest)
        if self.kind == "victim":
            self._close_episodes(result, self.last_end - 59 if watermark < FLUSH else FLUSH)
        # Published windows are kept while any counts partition can still correct them (its
        # horizon: a partition whose data lags the others' reopens older minutes), and at
        # least the retention behind what was published. (A new owner of a counts partition
        # re-closes windows from an hour boundary before its horizon: those older than this
        # were published already, and are dropped as too late, unchanged.)
        if len(self.shard_horizon) == self.shards:
            self._forget(min(self.last_end - self.retention_s, *self.shard_horizon.values()))

    def _close_episodes(self, result: MergeResult, until: int) -> None:
        """Close the backscatter episodes whose last minute ended before ``until``.

        An episode ends with the first published minute without its victim (at the rate
        floor). The detector sees only minutes that have some victim, so a quiet minute ends
        the runs here; with every counts partition idle (``until`` = FLUSH), all of them.
        Where the closes reached is kept in the table (``victim|episodes``): a new owner
        rebuilds the episodes from re-closed windows, and must not send again the records of
        those its predecessor closed (their windows raise no alert again either)."""
        closed = self.detector.close_before(until)
        if not closed:
            return
        before = self.episodes_closed_until
        result.alerts += [a for a in closed if a["window_end"].timestamp() >= before]
        self.episodes_closed_until = max(before, until)
        self.table[episodes_key(self.kind)] = str(self.episodes_closed_until).encode()

    def _forget(self, horizon: int) -> None:
        """Published windows ending at or before ``horizon`` can no longer be corrected."""
        if horizon < self._forgot + 60:
            return
        self._forgot = horizon
        for chunks in self._published.values():
            keep = []
            for c in chunks:
                if c.last + 3600 <= horizon:
                    continue
                kept = c.select(c.end > horizon) if c.first < horizon else c
                if len(kept):
                    keep.append(kept)
            chunks[:] = keep
        self._revision = {k: r for k, r in self._revision.items() if k // 2 >= horizon - 3600}
        self.bundles.forget(self.kind, horizon)
        for key in [k for k, end in self._keys.items() if end <= horizon]:
            del self._keys[key]
            self.table.pop(key, None)  # a tombstone in the changelog
        point = self.point.advance(horizon)
        if point is not None:
            self.table[replay_key(self.kind)] = point
        if self.dictionary.crowded():
            self._compact()

    def _compact(self) -> None:
        """Keep only the values of the windows still pending or correctable, renumbered: the
        dictionary would otherwise hold every victim and port ever seen."""
        stores = (self._pending, self._published)
        used = [c.vid for store in stores for chunks in store.values() for c in chunks]
        self.dictionary, remap = self.dictionary.keep(used)
        for store in stores:
            for chunks in store.values():
                chunks[:] = [c.renumbered(remap) for c in chunks]
        self.compactions += 1

    def _correct(self, shard: int, chunk: _Chunk) -> tuple[int, int]:
        """Windows published before, sent again by ``shard``: replace its rows, publish the
        windows whose sums changed with the next revision. Returns (corrected, too late)."""
        horizon = self._forgot
        too_late = chunk.end <= horizon
        if too_late.any():
            self.too_late += int(chunk.packets[too_late].sum())
            chunk = chunk.select(~too_late)
        if not len(chunk):
            return 0, int(too_late.sum())
        keys = np.unique(chunk.key)
        before = self._sum_of(keys)
        self._put(self._published, shard, chunk)
        after = self._sum_of(keys)
        changed = _changed_keys(before, after)
        if not len(changed):
            return 0, int(too_late.sum())
        for k in changed.tolist():
            self._revision[k] = self._revision.get(k, 0) + 1
        self.corrections += len(changed)
        self._emit(after.select(np.isin(after.key, changed)), first_time=False)
        return len(changed), int(too_late.sum())

    def _sum_of(self, keys: I64) -> _Chunk:
        parts = [c.select(np.isin(c.key, keys)) for chunks in self._published.values() for c in chunks]
        parts = [p for p in parts if len(p)]
        return _sum(_concat(parts)) if parts else _empty()

    # -- publishing ---------------------------------------------------------------------------

    def _emit(self, merged: _Chunk, first_time: bool) -> list[dict[str, Any]]:
        """Write merged windows to the table; run the alert rules on the first publication."""
        revisions = (
            np.array([self._revision.get(k, 0) for k in merged.key.tolist()], np.int64)
            if not first_time
            else None
        )
        columns = (merged.size, merged.start, merged.vid, merged.packets, merged.sources)
        for key, value in self.bundles.writes_rows(self.kind, self.dictionary.names(), columns, revisions):
            self.table[key] = value
            self._keys[key] = int(key.rsplit(b"|", 1)[1]) + 3600
        self.published_windows += _count_windows(merged)
        if not first_time:
            return []
        alerts: list[dict[str, Any]] = []
        t = self.detector.t
        watched = np.zeros(len(merged), dtype=bool)
        if self.kind in SURGE_KINDS:
            watched |= merged.size == SIZES.index(t.window)
        if self.kind == "victim":
            watched |= (merged.size == MINUTE) & (merged.packets >= t.backscatter_ppm)
        if not watched.any():
            return alerts
        w = merged.select(watched)
        rows = WindowRows(
            self.kind,
            cast(Sequence[str], self.dictionary.names()),
            w.size,
            w.start,
            w.vid,
            w.packets,
            w.sources,
        )
        for window in rows.windows():
            raised = self.detector.observe(window)
            if window.start > self.published_until[window.size]:  # else published before a takeover
                alerts += raised
        return alerts

    def pending_windows(self) -> int:
        """Windows waiting for a counts partition (for logs)."""
        keys = [c.key for chunks in self._pending.values() for c in chunks]
        return len(np.unique(np.concatenate(keys))) if keys else 0


def _count_windows(merged: _Chunk) -> int:
    """Windows in rows sorted by size and start."""
    if not len(merged):
        return 0
    return 1 + int(
        np.count_nonzero((merged.size[1:] != merged.size[:-1]) | (merged.start[1:] != merged.start[:-1]))
    )


def _changed_keys(before: _Chunk, after: _Chunk) -> I64:
    """Window keys whose rows differ between two sums."""
    keys = np.unique(np.concatenate([before.key, after.key]))
    out = []
    for k in keys.tolist():
        b, a = before.key == k, after.key == k
        same = (
            b.sum() == a.sum()
            and np.array_equal(before.vid[b], after.vid[a])
            and np.array_equal(before.packets[b], after.packets[a])
            and np.array_equal(before.sources[b], after.sources[a])
        )
        if not same:
            out.append(k)
    return np.array(out, np.int64)
