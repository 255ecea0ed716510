"""Event-time windows of one dimension kind over one counts partition's addresses.

:class:`KindWindows` merges partials (:mod:`streams.combiner`) and closes windows when the
event-time watermark (:mod:`streams.watermark`) passes their end:

- 1-minute windows count packets and unique addresses exactly (a set per minute);
- 1-hour windows count packets exactly and unique addresses with a HyperLogLog per value
  (:mod:`streams.sketch`).

Closed windows come out as columns (:class:`WindowRows`: one row per window and value), never
as one object per window: a counts partition closes every minute of every kind, and with the
work spread over partitions the per-window Python cost would be paid once per partition.
:class:`ClosedWindow` is the one-window view the alert rules and tests read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from schemas.partials import Partial
from schemas.windowrows import HOUR, MINUTE, SIZES, ClosedWindow, WindowRows
from streams.hours import Hours, distinct, first_of_runs
from streams.watermark import FLUSH

# ClosedWindow, WindowRows and the size codes are re-exported: windows are what this makes.
__all__ = ["HOUR", "MINUTE", "SIZES", "ClosedWindow", "KindWindows", "ValueIds", "WindowRows"]

I64 = npt.NDArray[np.int64]
U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]


@dataclass
class _Rows:
    """Column chunks of (minute start, value id, packets) and (minute start, value id, address)."""

    minute: I64
    vid: U32
    packets: I64
    pair_minute: I64
    pair_vid: U32
    pair_addr: U64

    @staticmethod
    def empty() -> _Rows:
        i, u = np.zeros(0, np.int64), np.zeros(0, np.uint32)
        return _Rows(i, u, i, i, u, np.zeros(0, np.uint64))

    @staticmethod
    def concat(chunks: Sequence[_Rows]) -> _Rows:
        if len(chunks) == 1:
            return chunks[0]
        if not chunks:
            return _Rows.empty()
        return _Rows(*(np.concatenate([getattr(c, f) for c in chunks]) for f in _ROW_FIELDS))

    def select(self, rows: npt.NDArray[np.bool_], pairs: npt.NDArray[np.bool_]) -> _Rows:
        return _Rows(
            self.minute[rows],
            self.vid[rows],
            self.packets[rows],
            self.pair_minute[pairs],
            self.pair_vid[pairs],
            self.pair_addr[pairs],
        )

    def renumbered(self, remap: U32) -> _Rows:
        """The same rows with value ids mapped through ``remap``."""
        return _Rows(
            self.minute, remap[self.vid], self.packets, self.pair_minute, remap[self.pair_vid], self.pair_addr
        )


_ROW_FIELDS = ("minute", "vid", "packets", "pair_minute", "pair_vid", "pair_addr")


class ValueIds:
    """A dictionary of dimension values: each value's dense id, and the values as an object
    array for fancy indexing (it may be longer than the list; grown by doubling)."""

    FLOOR = 4096  # values below which a dictionary is never compacted

    def __init__(self, values: Sequence[str] = ()) -> None:
        """A dictionary of ``values`` (distinct), numbered in their order."""
        self.values: list[str] = list(values)
        self._ids: dict[str, int] = {v: i for i, v in enumerate(self.values)}
        self._names: npt.NDArray[np.object_] = np.zeros(0, dtype=object)
        self._filled = 0
        self._kept = len(self.values)  # values when last compacted

    def crowded(self) -> bool:
        """True once the values have doubled since the last compaction (and reach ``FLOOR``):
        time to keep only the values still in use (:meth:`keep`), so that a dictionary fed new
        values every day (victims, scanned ports) holds what the open windows use, not every
        value ever seen, and its ids stay below the bits the hour keys give them."""
        return len(self.values) >= 2 * max(self._kept, self.FLOOR)

    def keep(self, used: Sequence[npt.NDArray[np.uint32]]) -> tuple[ValueIds, U32]:
        """A new dictionary of the values whose ids appear in ``used``, numbered in the same
        order (a sorted id column stays sorted), and the map from old ids to new ones. This
        dictionary is left as it was: windows already handed out keep reading its values."""
        live = np.unique(np.concatenate([np.asarray(u, np.uint32) for u in used] or [np.zeros(0, np.uint32)]))
        values = self.values
        kept = ValueIds([values[i] for i in live.tolist()])
        remap = np.full(len(values), np.iinfo(np.uint32).max, np.uint32)
        remap[live] = np.arange(len(live), dtype=np.uint32)
        return kept, remap

    def ids(self, values: Sequence[str]) -> U32:
        """The id of each value, new ones added."""
        ids = np.empty(len(values), dtype=np.uint32)
        for i, v in enumerate(values):
            gid = self._ids.get(v)
            if gid is None:
                gid = self._ids[v] = len(self.values)
                self.values.append(v)
            ids[i] = gid
        return ids

    def names(self) -> npt.NDArray[np.object_]:
        """The values as an object array, indexable by id."""
        have, want = self._filled, len(self.values)
        if have < want:
            if want > len(self._names):
                grown = np.empty(max(want, 2 * len(self._names)), dtype=object)
                grown[:have] = self._names[:have]
                self._names = grown
            self._names[have:want] = self.values[have:want]
            self._filled = want
        return self._names


class KindWindows:
    """Open 1-minute and 1-hour windows of one dimension kind, closed by a watermark.

    Partials are appended as column chunks and reduced in bulk when the watermark closes
    minutes, so the cost per partial does not grow with the number of minutes it spans
    (a replayed quarter puts hours into one batch).

    Closed windows are kept for ``retention_s`` seconds of event time: rows that arrive after
    their window closed (a source partition that was idle, a slow worker) reopen it, and it
    is closed again with the corrected counts (accumulating updates, as in Beam's allowed
    lateness; the merge stage numbers the revisions). Rows older than the retention are
    dropped and counted in ``late_packets``.
    """

    def __init__(self, kind: str, retention_s: int = 6 * 3600) -> None:
        """Empty windows for ``kind``."""
        self.kind = kind
        self.retention_s = retention_s
        self.dictionary = ValueIds()
        self.values = self.dictionary.values
        # Rows of open minutes, not yet reduced, as chunks with their earliest minute: a close
        # touches only the chunks that reach back before the watermark.
        self._open: list[tuple[int, _Rows]] = []
        self._open_minutes: set[int] = set()
        # Closed minutes, reduced (packets per minute and value; distinct pairs), kept for
        # reopening; chunks are forgotten whole once their newest minute leaves the retention.
        self._done: list[tuple[int, _Rows]] = []
        self._hours = Hours()
        self.reopened = 0
        self.closed_before = -(2**62)  # every minute starting before this is closed
        self.late_packets = 0
        # Rows before this belong to windows a previous owner made final (streams.takeover).
        self.final_before = -(2**62)
        self.skipped_final = 0
        self.packets_added = 0
        self.max_minute = -(2**62)  # start of the latest minute that received rows
        self._horizon = -(2**62)  # closed minutes before this are forgotten
        self.compactions = 0  # times the dictionary let go of values no window uses

    def add(self, p: Partial) -> None:
        """Merge one partial; rows of closed minutes reopen them (within the retention)."""
        if not len(p.minute):
            return
        gids = self.dictionary.ids(p.values)
        rows = _Rows(
            p.minute,
            gids[p.value_idx],
            p.packets.astype(np.int64),
            p.pair_minute,
            gids[p.pair_value_idx],
            p.pair_addr,
        )
        final = rows.minute < self.final_before
        if final.any():
            # A previous owner of this kind counted these rows into windows that are final.
            self.skipped_final += int(rows.packets[final].sum())
            rows = rows.select(~final, rows.pair_minute >= self.final_before)
        late = rows.minute < self.closed_before
        if late.any():
            for minute in np.unique(rows.minute[late]).tolist():
                if self._reopen(int(minute)):
                    late[rows.minute == minute] = False
            self.late_packets += int(rows.packets[late].sum())
            if late.any():
                rows = rows.select(~late, ~np.isin(rows.pair_minute, rows.minute[late]))
        if not len(rows.minute):
            return
        self._open.append((int(rows.minute.min()), rows))
        self._open_minutes.update(distinct(rows.minute))
        self.packets_added += int(rows.packets.sum())
        self.max_minute = max(self.max_minute, int(rows.minute.max()))

    def _reopen(self, minute: int) -> bool:
        """Bring a closed minute (and its hour) back to accept late rows; False if forgotten."""
        if minute in self._open_minutes:
            return True
        if minute < self._horizon:
            return False
        found: list[_Rows] = []
        for i, (newest, chunk) in enumerate(self._done):
            rows, pairs = chunk.minute == minute, chunk.pair_minute == minute
            if rows.any():
                found.append(chunk.select(rows, pairs))
                self._done[i] = (newest, chunk.select(~rows, ~pairs))
        self._hours.reopen(minute - minute % 3600)
        # The minute is closed again later and adds its packets to the hour anew; the HLL
        # registers need no correction (adding the same addresses again changes nothing).
        empty = np.zeros(0, np.int64)
        for rows in found:
            hours = rows.minute - rows.minute % 3600
            self._hours.add(
                hours, rows.vid, -rows.packets, empty, np.zeros(0, np.uint32), np.zeros(0, np.uint64)
            )
            self._open.append((minute, rows))
        self._open_minutes.add(minute)
        self.reopened += 1
        return True

    @property
    def horizon(self) -> int:
        """Minutes that start before this are forgotten: late packets cannot reopen them."""
        return self._horizon

    def open_minutes(self) -> list[int]:
        """Start times of the minutes still open."""
        return sorted(self._open_minutes)

    def close_until(self, watermark_s: int) -> WindowRows:
        """Close every window that ends at or before ``watermark_s``; return their rows
        (minutes first, then hours, each in time order)."""
        parts: list[tuple[int, I64, U32, I64, I64]] = []
        if self._open_minutes and min(self._open_minutes) + 60 <= watermark_s:
            parts.append((MINUTE, *self._close_minutes(watermark_s)))
        # A flush (watermark at "infinity") closes what exists without making all future
        # data late: later rows are late only if they fall in a minute that was closed.
        boundary = watermark_s - watermark_s % 60
        self.closed_before = max(self.closed_before, min(boundary, self.max_minute + 60))
        hours = self._hours.close(watermark_s)
        if len(hours[0]):
            parts.append((HOUR, *hours))
        self._forget(min(watermark_s, self.max_minute + 60) - self.retention_s)
        out = self._rows(parts) if parts else WindowRows.empty(self.kind, self.values)
        if self.dictionary.crowded():
            self._compact()  # after: ``out`` reads the dictionary its ids are from
        return out

    def _rows(self, parts: list[tuple[int, I64, U32, I64, I64]]) -> WindowRows:
        return WindowRows(
            self.kind,
            self.values,
            np.concatenate([np.full(len(p[1]), p[0], np.uint8) for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]).astype(np.uint32),
            np.concatenate([p[3] for p in parts]).astype(np.int64),
            np.concatenate([p[4] for p in parts]).astype(np.int64),
        )

    def _compact(self) -> None:
        """Keep only the values the open and retained windows use, renumbered."""
        chunks = [c for _, c in self._open] + [c for _, c in self._done]
        used = [c.vid for c in chunks] + [c.pair_vid for c in chunks] + self._hours.vids()
        self.dictionary, remap = self.dictionary.keep(used)
        self.values = self.dictionary.values
        self._open = [(first, c.renumbered(remap)) for first, c in self._open]
        self._done = [(newest, c.renumbered(remap)) for newest, c in self._done]
        self._hours.renumber(remap)
        self.compactions += 1

    def _forget(self, horizon: int) -> None:
        if horizon <= self._horizon:
            return
        self._horizon = horizon
        self._done = [(newest, chunk) for newest, chunk in self._done if newest >= horizon]
        self._hours.forget(horizon)

    def _close_minutes(self, watermark_s: int) -> tuple[I64, U32, I64, I64]:
        """Reduce the rows of every minute ending by the watermark, in one NumPy pass."""
        due = [c for first, c in self._open if first + 60 <= watermark_s]
        self._open = [(first, c) for first, c in self._open if first + 60 > watermark_s]
        rows = _Rows.concat(due)
        cut, pcut = rows.minute + 60 <= watermark_s, rows.pair_minute + 60 <= watermark_s
        if not cut.all():
            keep = rows.select(~cut, ~pcut)
            self._open.append((int(keep.minute.min()), keep))
        rows = rows.select(cut, pcut)
        # Composite keys (minute, value) and (minute, value, address), each sorted once.
        nv = max(len(self.values), 1)
        m0 = int(min(rows.minute.min(), rows.pair_minute.min())) if len(rows.minute) else 0
        group = ((rows.minute - m0) // 60) * nv + rows.vid
        order = np.argsort(group, kind="stable")
        g, n = group[order], rows.packets[order]
        starts = np.flatnonzero(first_of_runs(g))
        g, n = g[starts], np.add.reduceat(n, starts) if len(n) else n
        m, v = (g // nv) * 60 + m0, (g % nv).astype(np.uint32)
        # Every triple's (minute, value) has packets: its index among the groups is dense.
        dense = np.searchsorted(g, ((rows.pair_minute - m0) // 60) * nv + rows.pair_vid)
        if not len(dense):
            pd, pa = dense.astype(np.int64), rows.pair_addr
        elif int(rows.pair_addr.max()) < 1 << 32 and len(g) < 1 << 31:
            # IPv4 keys: (group, address) packs into one int64, and one sort dedupes.
            triples = np.sort((dense.astype(np.int64) << 32) | rows.pair_addr.astype(np.int64))
            triples = triples[first_of_runs(triples)]
            pd, pa = triples >> 32, (triples & 0xFFFFFFFF).astype(np.uint64)
        else:  # 64-bit keys (IPv6 sources hashed): two sort keys
            order = np.lexsort((rows.pair_addr, dense))
            pd, pa = dense[order].astype(np.int64), rows.pair_addr[order]
            first = first_of_runs(pd, pa)
            pd, pa = pd[first], pa[first]
        pg = g[pd]
        pm, pv = (pg // nv) * 60 + m0, (pg % nv).astype(np.uint32)
        uniq = np.bincount(pd, minlength=len(g)).astype(np.int64)
        reduced = _Rows(m, v, n, pm, pv, pa)
        if len(m):
            self._done.append((int(m[-1]), reduced))
        # Fold into the hours.
        hours_of = m - m % 3600
        phours_of = pm - pm % 3600
        self._hours.add(hours_of, v, n, phours_of, pv, pa)
        self._open_minutes.difference_update(distinct(m))
        return m, v, n, uniq

    def flush(self) -> WindowRows:
        """Close everything (end of input)."""
        return self.close_until(FLUSH)
