"""Event-time windows of one dimension kind over one counts partition's addresses.

:class:`KindWindows` merges partials (:mod:`streams.partials`) and closes windows when the
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

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from streams.partials import Partial
from streams.sketch import HLL_P, INV_POW2, estimate, hll_positions
from streams.watermark import FLUSH

__all__ = ["HOUR", "MINUTE", "SIZES", "ClosedWindow", "KindWindows", "ValueIds", "WindowRows"]

I64 = npt.NDArray[np.int64]
U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]

MINUTE, HOUR = 0, 1  # size codes of WindowRows
SIZES = ("1m", "1h")
SECONDS = (60, 3600)


@dataclass(frozen=True, eq=False)
class WindowRows:
    """Closed windows of one kind as columns: one row per (window, value), sorted by size,
    start and value id; ``values`` is the dictionary the value ids index."""

    kind: str
    values: Sequence[str]
    size: U8
    start: I64
    vid: U32
    packets: I64
    sources: I64

    @staticmethod
    def empty(kind: str, values: Sequence[str] = ()) -> WindowRows:
        """No rows."""
        i = np.zeros(0, np.int64)
        return WindowRows(kind, values, np.zeros(0, np.uint8), i, np.zeros(0, np.uint32), i, i)

    def __len__(self) -> int:
        return len(self.start)

    @property
    def end(self) -> I64:
        """Exclusive end of each row's window, seconds."""
        return self.start + np.where(self.size == MINUTE, 60, 3600)

    def select(self, rows: npt.NDArray[Any]) -> WindowRows:
        """The rows picked by a mask or an index array."""
        return WindowRows(
            self.kind,
            self.values,
            self.size[rows],
            self.start[rows],
            self.vid[rows],
            self.packets[rows],
            self.sources[rows],
        )

    def windows(self) -> list[ClosedWindow]:
        """One :class:`ClosedWindow` per (size, start) (for the alert rules and tests)."""
        out = []
        names = np.asarray(self.values, dtype=object)
        first = np.ones(len(self), dtype=bool)
        first[1:] = (self.size[1:] != self.size[:-1]) | (self.start[1:] != self.start[:-1])
        bounds = [*np.flatnonzero(first).tolist(), len(self)]
        for a, b in itertools.pairwise(bounds):
            out.append(
                ClosedWindow(
                    self.kind,
                    SIZES[int(self.size[a])],
                    int(self.start[a]),
                    names[self.vid[a:b]].tolist() if b > a else [],
                    self.packets[a:b],
                    self.sources[a:b],
                )
            )
        return out


@dataclass(frozen=True, eq=False)
class ClosedWindow:
    """Final counts of one window, as columns: per value, packets and unique addresses."""

    kind: str
    size: str  # "1m" or "1h"
    start: int  # seconds since the epoch, UTC
    values: list[str]
    packets: I64
    sources: I64
    revision: int = 0  # 0 when first closed; n when late rows re-closed it for the n-th time

    @classmethod
    def of(
        cls, kind: str, size: str, start: int, counts: Mapping[str, tuple[int, int]], revision: int = 0
    ) -> ClosedWindow:
        """A window from ``value -> (packets, unique addresses)``."""
        pairs = list(counts.values())
        return cls(
            kind,
            size,
            start,
            list(counts),
            np.array([p for p, _ in pairs], np.int64),
            np.array([u for _, u in pairs], np.int64),
            revision,
        )

    @cached_property
    def counts(self) -> dict[str, tuple[int, int]]:
        """``value -> (packets, unique addresses)`` (built on first use: most windows are only
        stored, and their columns serialise without it)."""
        return dict(
            zip(self.values, zip(self.packets.tolist(), self.sources.tolist(), strict=True), strict=True)
        )

    @property
    def end(self) -> int:
        """Exclusive end, seconds since the epoch."""
        return self.start + (60 if self.size == "1m" else 3600)


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


_ROW_FIELDS = ("minute", "vid", "packets", "pair_minute", "pair_vid", "pair_addr")


_VID_BITS = 26  # value ids below 2^26 (67M values); hours since the epoch below 2^20 (year 2089)


class _Hours:
    """Every hour window of a kind in columns: packets as (hour, value, packets) rows and one
    HyperLogLog per (hour, value) kept sparse, as keys ``hour << 38 | value << 12 | register``
    with their ranks. Rows are appended as minutes close and reduced in one pass when hours
    close (a replay closes hundreds of hours at once: no Python loop per hour). Closed hours
    stay, reduced, until the retention forgets them, so that a late minute can reopen its hour.
    """

    def __init__(self) -> None:
        """No hours."""
        self._pk: list[tuple[I64, U32, I64]] = []  # open: (hour start, value id, packets)
        self._sk: list[tuple[I64, npt.NDArray[np.uint8]]] = []  # open: (key, rank)
        self.open: set[int] = set()
        self._done: list[tuple[int, tuple[I64, U32, I64], tuple[I64, npt.NDArray[np.uint8]]]] = []
        self._pending = 0

    @staticmethod
    def _keys(hours: I64, vids: U32, reg: npt.NDArray[np.int64]) -> I64:
        return ((hours // 3600) << (_VID_BITS + HLL_P)) | (vids.astype(np.int64) << HLL_P) | reg

    def add(self, hours: I64, vids: U32, packets: I64, pair_hours: I64, pair_vids: U32, addrs: U64) -> None:
        """Add (or, with negative counts, take back) packets per (hour, value), and fold
        (hour, value, address) triples into the sketches."""
        if len(hours):
            self._pk.append((hours, vids, packets))
            self.open.update(_distinct(hours))
        if len(addrs):
            reg, rank = hll_positions(addrs)
            self._sk.append((self._keys(pair_hours, pair_vids, reg), rank))
            self._pending += len(addrs)
            if self._pending > 1 << 18:  # compacted: at most one rank per (hour, value, register)
                self._sk = [_max_rank(*_cat2(self._sk))]
                self._pending = 0

    def reopen(self, hour: int) -> None:
        """Bring a closed hour back (its reduced rows join the open ones)."""
        if hour in self.open:
            return
        for i, (newest, pk, sk) in enumerate(self._done):
            if newest < hour:
                continue
            rows = pk[0] == hour
            srows = (sk[0] >> (_VID_BITS + HLL_P)) * 3600 == hour
            if rows.any() or srows.any():
                self._pk.append((pk[0][rows], pk[1][rows], pk[2][rows]))
                self._sk.append((sk[0][srows], sk[1][srows]))
                self._done[i] = (
                    newest,
                    (pk[0][~rows], pk[1][~rows], pk[2][~rows]),
                    (sk[0][~srows], sk[1][~srows]),
                )
        self.open.add(hour)

    def close(self, watermark_s: int) -> tuple[I64, U32, I64, I64]:
        """Hours ending by the watermark: (hour start, value id, packets, estimated sources)."""
        due = [h for h in self.open if h + 3600 <= watermark_s]
        empty = np.zeros(0, np.int64)
        if not due:
            return empty, np.zeros(0, np.uint32), empty, empty
        self.open.difference_update(due)
        limit = max(due) + 3600
        hours, vids, packets = _cat3(self._pk)
        take = hours + 3600 <= watermark_s
        if not self.open:
            take[:] = True
        rest = ~take
        self._pk = [(hours[rest], vids[rest], packets[rest])] if rest.any() else []
        keys, ranks = _cat2(self._sk)
        stake = (keys >> (_VID_BITS + HLL_P)) * 3600 + 3600 <= min(watermark_s, limit)
        self._sk = [(keys[~stake], ranks[~stake])] if (~stake).any() else []
        hours, vids, packets = hours[take], vids[take], packets[take]
        keys, ranks = _max_rank(keys[stake], ranks[stake])
        # Packets per (hour, value).
        group = ((hours // 3600) << _VID_BITS) | vids.astype(np.int64)
        order = np.argsort(group, kind="stable")
        g, n = group[order], packets[order]
        starts = np.flatnonzero(_first_of_runs(g)) if len(g) else np.zeros(0, np.intp)
        g, n = g[starts], np.add.reduceat(n, starts) if len(n) else n
        # Sketch estimates per (hour, value): zero registers and the sum of 2^-rank.
        owner = keys >> HLL_P
        ostarts = np.flatnonzero(_first_of_runs(owner)) if len(owner) else np.zeros(0, np.intp)
        set_regs = np.diff(np.append(ostarts, len(owner)))
        weights = np.add.reduceat(INV_POW2[ranks], ostarts) if len(ostarts) else np.zeros(0)
        m = 1 << HLL_P
        est = estimate(m, m - set_regs, (m - set_regs) + weights)
        sources = np.zeros(len(g), np.int64)
        pos = np.searchsorted(g, owner[ostarts])
        hit = pos < len(g)
        hit[hit] = g[pos[hit]] == owner[ostarts][hit]
        sources[pos[hit]] = est[hit]
        out_h, out_v = (g >> _VID_BITS) * 3600, (g & ((1 << _VID_BITS) - 1)).astype(np.uint32)
        # Keep the closed hours, reduced, for a late minute that reopens one.
        if len(out_h):
            self._done.append((int(out_h.max()), (out_h, out_v, n), (keys, ranks)))
        keep = n > 0  # a value whose packets were all taken back by a reopened minute
        return out_h[keep], out_v[keep], n[keep], sources[keep]

    def forget(self, horizon: int) -> None:
        """Closed hours that end by ``horizon`` can no longer be reopened."""
        self._done = [d for d in self._done if d[0] + 3600 > horizon]


def _cat2(chunks: list[tuple[I64, npt.NDArray[np.uint8]]]) -> tuple[I64, npt.NDArray[np.uint8]]:
    if not chunks:
        return np.zeros(0, np.int64), np.zeros(0, np.uint8)
    if len(chunks) == 1:
        return chunks[0]
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


def _cat3(chunks: list[tuple[I64, U32, I64]]) -> tuple[I64, U32, I64]:
    if not chunks:
        i = np.zeros(0, np.int64)
        return i, np.zeros(0, np.uint32), i
    if len(chunks) == 1:
        return chunks[0]
    return tuple(np.concatenate([c[k] for c in chunks]) for k in range(3))  # type: ignore[return-value]


def _max_rank(keys: I64, ranks: npt.NDArray[np.uint8]) -> tuple[I64, npt.NDArray[np.uint8]]:
    """One entry per key with its highest rank, sorted by key."""
    if not len(keys):
        return keys, ranks
    order = np.argsort(keys)
    keys, ranks = keys[order], ranks[order]
    starts = np.flatnonzero(_first_of_runs(keys))
    return keys[starts], np.maximum.reduceat(ranks, starts)


def _distinct(values: I64) -> list[int]:
    """The distinct values of an array whose equal values are adjacent (sorted or grouped)."""
    return list(values[_first_of_runs(values)].tolist()) if len(values) else []


def _first_of_runs(*sorted_keys: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Mask of the first row of every run of equal keys (keys already sorted together)."""
    n = len(sorted_keys[0])
    first = np.ones(n, dtype=bool)
    if n > 1:
        differs = np.zeros(n - 1, dtype=bool)
        for k in sorted_keys:
            differs |= k[1:] != k[:-1]
        first[1:] = differs
    return first


class ValueIds:
    """A dictionary of dimension values: each value's dense id, and the values as an object
    array for fancy indexing (it may be longer than the list; grown by doubling)."""

    def __init__(self) -> None:
        """No values yet."""
        self.values: list[str] = []
        self._ids: dict[str, int] = {}
        self._names: npt.NDArray[np.object_] = np.zeros(0, dtype=object)
        self._filled = 0

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
        self._hours = _Hours()
        self.reopened = 0
        self.closed_before = -(2**62)  # every minute starting before this is closed
        self.late_packets = 0
        # Rows before this belong to windows a previous owner made final (streams.takeover).
        self.final_before = -(2**62)
        self.skipped_final = 0
        self.packets_added = 0
        self.max_minute = -(2**62)  # start of the latest minute that received rows
        self._horizon = -(2**62)  # closed minutes before this are forgotten

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
        self._open_minutes.update(_distinct(rows.minute))
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
        if not parts:
            return WindowRows.empty(self.kind, self.values)
        return WindowRows(
            self.kind,
            self.values,
            np.concatenate([np.full(len(p[1]), p[0], np.uint8) for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]).astype(np.uint32),
            np.concatenate([p[3] for p in parts]).astype(np.int64),
            np.concatenate([p[4] for p in parts]).astype(np.int64),
        )

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
        starts = np.flatnonzero(_first_of_runs(g))
        g, n = g[starts], np.add.reduceat(n, starts) if len(n) else n
        m, v = (g // nv) * 60 + m0, (g % nv).astype(np.uint32)
        # Every triple's (minute, value) has packets: its index among the groups is dense.
        dense = np.searchsorted(g, ((rows.pair_minute - m0) // 60) * nv + rows.pair_vid)
        if not len(dense):
            pd, pa = dense.astype(np.int64), rows.pair_addr
        elif int(rows.pair_addr.max()) < 1 << 32 and len(g) < 1 << 31:
            # IPv4 keys: (group, address) packs into one int64, and one sort dedupes.
            triples = np.sort((dense.astype(np.int64) << 32) | rows.pair_addr.astype(np.int64))
            triples = triples[_first_of_runs(triples)]
            pd, pa = triples >> 32, (triples & 0xFFFFFFFF).astype(np.uint64)
        else:  # 64-bit keys (IPv6 sources hashed): two sort keys
            order = np.lexsort((rows.pair_addr, dense))
            pd, pa = dense[order].astype(np.int64), rows.pair_addr[order]
            first = _first_of_runs(pd, pa)
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
        self._open_minutes.difference_update(_distinct(m))
        return m, v, n, uniq

    def flush(self) -> WindowRows:
        """Close everything (end of input)."""
        return self.close_until(FLUSH)
