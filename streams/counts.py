"""Windowed counts by event time: the combiner's partial counts and the windows they fill.

The enrich agent turns each packet batch into one :class:`Partial` per dimension kind:
packets per (minute, value) and the distinct (minute, value, address) triples, so that unique
sources can be counted exactly per minute when partials from many batches and workers are
merged. :class:`KindWindows` merges partials of one kind in the count agent and closes
windows when the event-time watermark passes their end:

- 1-minute windows count packets and unique sources exactly (a set per minute);
- 1-hour windows count packets exactly and unique sources with a HyperLogLog per value
  (2^12 registers, ~1.6 % standard error, 4 KiB per value-hour): an exact hourly set would
  grow with every source a telescope sees in an hour (millions on a /16), held per value and
  kind, while the exact figures are ClickHouse's job (its rollups keep uniq states).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "FLUSH",
    "ClosedWindow",
    "HLL_P",
    "KINDS",
    "KindWindows",
    "Partial",
    "WatermarkTracker",
    "aggregate",
    "hll_estimate",
    "hll_estimates",
    "hll_positions",
    "hll_update",
]

KINDS = ("port", "region", "fp_region", "sensor", "victim")
MINUTE_NS = 60 * 10**9
FLUSH = 2**62  # the watermark that closes every window
HLL_P = 12

I64 = npt.NDArray[np.int64]
U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]


@dataclass(frozen=True)
class Partial:
    """Counts of one batch for one dimension kind (the PartialCounts record's content)."""

    kind: str
    values: list[str]
    minute: I64
    value_idx: U32
    packets: U32
    pair_minute: I64
    pair_value_idx: U32
    pair_addr: U64

    @property
    def total_packets(self) -> int:
        """Packets this partial counts."""
        return int(self.packets.sum(dtype=np.int64))


def aggregate(
    kind: str,
    ts_ns: npt.NDArray[np.int64],
    codes: npt.NDArray[np.int64],
    values: Sequence[str],
    addrs: U64,
    addr_index: tuple[U64, npt.NDArray[np.intp]] | None = None,
) -> Partial:
    """Combine rows (timestamp, value code, address) into per-minute packets and triples.

    ``addr_index`` is ``np.unique(addrs, return_inverse=True)`` when the caller has it
    already (one batch's sources serve every kind); then one sort of a composite key does it.
    """
    minutes = (ts_ns // MINUTE_NS).astype(np.int64)
    if not len(minutes):
        empty_i, empty_u = np.zeros(0, np.int64), np.zeros(0, np.uint32)
        return Partial(
            kind, list(values), empty_i, empty_u, empty_u, empty_i, empty_u, np.zeros(0, np.uint64)
        )
    uaddr, aidx = addr_index if addr_index is not None else np.unique(addrs, return_inverse=True)
    m0 = int(minutes.min())
    nv = max(len(values), 1)
    na = max(len(uaddr), 1)
    group = (minutes - m0) * nv + codes  # (minute, value)
    triples, per_triple = np.unique(group * na + aidx, return_counts=True)
    tgroup = triples // na
    first = np.ones(len(tgroup), dtype=bool)
    first[1:] = tgroup[1:] != tgroup[:-1]
    starts = np.flatnonzero(first)
    ukey = tgroup[starts]
    counts = np.add.reduceat(per_triple, starts)
    return Partial(
        kind,
        list(values),
        ((ukey // nv + m0) * 60).astype(np.int64),
        (ukey % nv).astype(np.uint32),
        counts.astype(np.uint32),
        ((tgroup // nv + m0) * 60).astype(np.int64),
        (tgroup % nv).astype(np.uint32),
        uaddr[triples % na].astype(np.uint64),
    )


# -- HyperLogLog over 64-bit address keys ---------------------------------------------------


def _mix64(x: U64) -> U64:
    """splitmix64 finaliser: spreads address keys uniformly over 64 bits."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def hll_positions(addrs: U64) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """Register index and rank of each address in a HyperLogLog of 2^HLL_P registers."""
    h = _mix64(addrs.astype(np.uint64))
    idx = (h >> np.uint64(64 - HLL_P)).astype(np.int64)
    rest = (h << np.uint64(HLL_P)) | np.uint64(1 << (HLL_P - 1))  # guard bit bounds the rank
    # rank = leading zeros of `rest` + 1 = 65 - its bit length, which is the binary exponent
    # frexp gives (float64 keeps the top bit exact).
    _, bitlen = np.frexp(rest.astype(np.float64))
    return idx, (65 - bitlen).astype(np.uint8)


def hll_update(registers: npt.NDArray[np.uint8], addrs: U64) -> None:
    """Add addresses to a HyperLogLog register array of 2^HLL_P bytes (in place)."""
    if not len(addrs):
        return
    idx, rank = hll_positions(addrs)
    np.maximum.at(registers, idx, rank)


def hll_estimate(registers: npt.NDArray[np.uint8]) -> int:
    """Cardinality estimate (Flajolet et al. 2007, with the small-range correction)."""
    return int(hll_estimates(registers.reshape(1, -1))[0])


def hll_estimates(registers: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """:func:`hll_estimate` of every row of a 2-D register array."""
    if not len(registers):
        return np.zeros(0, np.int64)
    m = registers.shape[1]
    zeros = np.count_nonzero(registers == 0, axis=1)
    return _estimate(m, zeros, _INV_POW2[registers].sum(axis=1))


def _estimate(m: int, zeros: npt.NDArray[Any], total: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """HyperLogLog estimates from each sketch's zero registers and sum of 2^-rank."""
    alpha = 0.7213 / (1 + 1.079 / m)
    raw = alpha * m * m / np.maximum(total, 1e-300)
    with np.errstate(divide="ignore"):
        linear = m * np.log(m / np.maximum(zeros, 1))
    small = (raw <= 2.5 * m) & (zeros > 0)
    out: npt.NDArray[np.int64] = np.rint(np.where(small, linear, raw)).astype(np.int64)
    return out


_INV_POW2 = np.ldexp(1.0, -np.arange(256, dtype=np.int64))


# -- windows ----------------------------------------------------------------------------------


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


@dataclass
class _Hour:
    """Packets per value, and one HyperLogLog per value kept sparse: (value, register) -> rank.

    The registers that are set are held as sorted keys ``value << HLL_P | register`` with
    their ranks, compacted (max rank per key) as chunks accumulate; an hour's value usually
    saw few sources, so this is far smaller and faster than 4 KiB of registers per value,
    and never larger than the dense form.
    """

    packets: I64 = field(default_factory=lambda: np.zeros(0, np.int64))  # by value id
    keys: list[I64] = field(default_factory=list)
    ranks: list[npt.NDArray[np.uint8]] = field(default_factory=list)
    pending: int = 0

    def add_packets(self, vids: U32, packets: I64, nvalues: int) -> None:
        """Add (or, with negative counts, take back) packets per value."""
        if len(self.packets) < nvalues:
            self.packets = np.concatenate([self.packets, np.zeros(nvalues - len(self.packets), np.int64)])
        np.add.at(self.packets, vids, packets)

    def add_sources(self, values: U32, addrs: U64) -> None:
        """Fold (value, address) pairs into the per-value HyperLogLogs."""
        if not len(values):
            return
        idx, rank = hll_positions(addrs)
        self.keys.append((values.astype(np.int64) << HLL_P) | idx)
        self.ranks.append(rank)
        self.pending += len(idx)
        if self.pending > 1 << 20:
            self._compact()

    def _compact(self) -> tuple[I64, npt.NDArray[np.uint8]]:
        keys = np.concatenate(self.keys) if self.keys else np.zeros(0, np.int64)
        ranks = np.concatenate(self.ranks) if self.ranks else np.zeros(0, np.uint8)
        if self.pending:
            both = np.sort((keys << 7) | ranks)  # ranks < 128: the highest of a key sorts last
            keys = both >> 7
            last = np.ones(len(keys), dtype=bool)
            last[:-1] = keys[1:] != keys[:-1]
            keys, ranks = keys[last], (both[last] & 127).astype(np.uint8)
            self.keys, self.ranks = [keys], [ranks]
        self.pending = 0
        return keys, ranks

    def counts(self) -> tuple[npt.NDArray[np.intp], I64, I64]:
        """Value ids with packets, their packets and estimated distinct addresses."""
        keys, ranks = self._compact()
        vids = np.flatnonzero(self.packets > 0)
        n = len(self.packets)
        owner = keys >> HLL_P
        m = 1 << HLL_P
        nonzero = np.bincount(owner, minlength=n)[:n]
        zeros = m - nonzero
        weights = np.bincount(owner, weights=_INV_POW2[ranks], minlength=n)[:n].astype(np.float64)
        total = zeros + weights
        return vids, self.packets[vids], _estimate(m, zeros, total)[vids]


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


class KindWindows:
    """Open 1-minute and 1-hour windows of one dimension kind, closed by a watermark.

    Partials are appended as column chunks and reduced in bulk when the watermark closes
    minutes, so the cost per partial does not grow with the number of minutes it spans
    (a replayed quarter puts hours into one batch).

    Closed windows are kept for ``retention_s`` seconds of event time: rows that arrive after
    their window closed (a source partition that was idle, a slow worker) reopen it, and it
    is closed again with the corrected counts and a higher ``revision`` (accumulating
    updates, as in Beam's allowed lateness). Rows older than the retention are dropped and
    counted in ``late_packets``.
    """

    def __init__(self, kind: str, retention_s: int = 6 * 3600) -> None:
        """Empty windows for ``kind``."""
        self.kind = kind
        self.retention_s = retention_s
        self.values: list[str] = []
        self._ids: dict[str, int] = {}
        self._names_array: npt.NDArray[np.object_] = np.zeros(0, dtype=object)
        self._names_filled = 0
        # Rows of open minutes, not yet reduced, as chunks with their earliest minute: a close
        # touches only the chunks that reach back before the watermark.
        self._open: list[tuple[int, _Rows]] = []
        self._open_minutes: set[int] = set()
        # Closed minutes, reduced (packets per minute and value; distinct pairs), kept for
        # reopening; chunks are forgotten whole once their newest minute leaves the retention.
        self._done: list[tuple[int, _Rows]] = []
        self._hours: dict[int, _Hour] = {}
        self._done_hours: dict[int, _Hour] = {}
        self._revision: dict[tuple[str, int], int] = {}
        self.reopened = 0
        self.closed_before = -(2**62)  # every minute starting before this is closed
        self.late_packets = 0
        # Rows before this belong to windows a previous owner made final (streams.takeover).
        self.final_before = -(2**62)
        self.skipped_final = 0
        self.packets_added = 0
        self.max_minute = -(2**62)  # start of the latest minute that received rows
        self._horizon = -(2**62)  # closed minutes before this are forgotten

    def _global_ids(self, values: Sequence[str]) -> U32:
        ids = np.empty(len(values), dtype=np.uint32)
        for i, v in enumerate(values):
            gid = self._ids.get(v)
            if gid is None:
                gid = self._ids[v] = len(self.values)
                self.values.append(v)
            ids[i] = gid
        return ids

    def add(self, p: Partial) -> None:
        """Merge one partial; rows of closed minutes reopen them (within the retention)."""
        if not len(p.minute):
            return
        gids = self._global_ids(p.values)
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
        self._open_minutes.update(np.unique(rows.minute).tolist())
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
        hour_start = minute - minute % 3600
        hour = self._hours.get(hour_start) or self._done_hours.pop(hour_start, None) or _Hour()
        self._hours[hour_start] = hour
        # The minute is closed again later and adds its packets to the hour anew; the HLL
        # registers need no correction (adding the same addresses again changes nothing).
        for rows in found:
            hour.add_packets(rows.vid, -rows.packets, len(self.values))
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

    def close_until(self, watermark_s: int) -> list[ClosedWindow]:
        """Close every window that ends at or before ``watermark_s``; return them in order."""
        closed: list[ClosedWindow] = []
        if self._open_minutes and min(self._open_minutes) + 60 <= watermark_s:
            closed += self._close_minutes(watermark_s)
        # A flush (watermark at "infinity") closes what exists without making all future
        # data late: later rows are late only if they fall in a minute that was closed.
        boundary = watermark_s - watermark_s % 60
        self.closed_before = max(self.closed_before, min(boundary, self.max_minute + 60))
        for hour in sorted(h for h in self._hours if h + 3600 <= watermark_s):
            closed.append(self._close_hour(hour))
        self._forget(min(watermark_s, self.max_minute + 60) - self.retention_s)
        return closed

    def _forget(self, horizon: int) -> None:
        if horizon <= self._horizon:
            return
        self._horizon = horizon
        self._done = [(newest, chunk) for newest, chunk in self._done if newest >= horizon]
        for start in [h for h in self._done_hours if h + 3600 <= horizon]:
            del self._done_hours[start]
        if len(self._revision) > 2 * (self.retention_s // 60 + 120):
            self._revision = {k: r for k, r in self._revision.items() if k[1] >= horizon - 3600}

    def _next_revision(self, size: str, start: int) -> int:
        rev = self._revision.get((size, start), -1) + 1
        self._revision[(size, start)] = rev
        return rev

    def _close_minutes(self, watermark_s: int) -> list[ClosedWindow]:
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
        pgroup = ((rows.pair_minute - m0) // 60) * nv + rows.pair_vid
        if len(pgroup) and int(rows.pair_addr.max()) < 1 << 32 and int(pgroup.max()) < 1 << 31:
            # IPv4 keys: (group, address) packs into one int64, and one sort dedupes.
            triples = np.sort((pgroup << 32) | rows.pair_addr.astype(np.int64))
            triples = triples[_first_of_runs(triples)]
            pg, pa = triples >> 32, (triples & 0xFFFFFFFF).astype(np.uint64)
        else:
            addrs, aid = np.unique(rows.pair_addr, return_inverse=True)
            na = max(len(addrs), 1)
            triples = np.sort(pgroup * na + aid)
            triples = triples[_first_of_runs(triples)]  # np.unique without inverse hashes: slower
            pg, pa = triples // na, addrs[triples % na]
        pm, pv = (pg // nv) * 60 + m0, (pg % nv).astype(np.uint32)
        kstarts = np.flatnonzero(_first_of_runs(pg))
        kcounts = np.diff(np.append(kstarts, len(pg)))
        uniq = np.zeros(len(g), np.int64)
        if len(kstarts):
            uniq[np.searchsorted(g, pg[kstarts])] = kcounts
        reduced = _Rows(m, v, n, pm, pv, pa)
        if len(m):
            self._done.append((int(m[-1]), reduced))
        # Fold into the hours.
        hours_of = m - m % 3600
        phours_of = pm - pm % 3600
        for hour_start in np.unique(hours_of).tolist():
            hour = self._hours.setdefault(hour_start, _Hour())
            sel = hours_of == hour_start
            hour.add_packets(v[sel], n[sel], len(self.values))
            psel = phours_of == hour_start
            hour.add_sources(pv[psel], pa[psel])
        # One ClosedWindow per minute, as column slices.
        out = []
        names = self._names()[v].tolist()
        bounds = [*np.flatnonzero(_first_of_runs(m)).tolist(), len(m)]
        for a, b in itertools.pairwise(bounds):
            start = int(m[a])
            self._open_minutes.discard(start)
            window = ClosedWindow(
                self.kind, "1m", start, names[a:b], n[a:b], uniq[a:b], self._next_revision("1m", start)
            )
            out.append(window)
        return out

    def _names(self) -> npt.NDArray[np.object_]:
        """The value names as an object array (for fancy indexing; it may be longer than the
        list), extended as values come, by doubling so that it is not rebuilt every time."""
        have, want = self._names_filled, len(self.values)
        if have < want:
            if want > len(self._names_array):
                grown = np.empty(max(want, 2 * len(self._names_array)), dtype=object)
                grown[:have] = self._names_array[:have]
                self._names_array = grown
            self._names_array[have:want] = self.values[have:want]
            self._names_filled = want
        return self._names_array

    def _close_hour(self, start: int) -> ClosedWindow:
        h = self._hours.pop(start)
        self._done_hours[start] = h
        vids, packets, sources = h.counts()
        return ClosedWindow(
            self.kind,
            "1h",
            start,
            self._names()[vids].tolist(),
            packets,
            sources,
            self._next_revision("1h", start),
        )

    def flush(self) -> list[ClosedWindow]:
        """Close everything (end of input)."""
        return self.close_until(FLUSH)


class WatermarkTracker:
    """Event-time watermark over the source (packets) partitions, with idleness.

    The watermark is the smallest of the per-partition watermarks (largest event time seen
    on each), minus the allowed lateness, and nothing closes until every source partition
    has spoken (data, or an idle marker). A partition is idle when the enrich agent that owns
    it reports it caught up (its last offset processed is the partition's end) and silent
    for a while; an idle partition does not hold the others back. When every partition is
    idle the input has ended (a finished replay, a sensor gone quiet) and the watermark is
    :data:`FLUSH`, which closes every open window. Idleness comes from the enrich side and
    consumer lag, not from this agent's clock, so a worker that is merely slow to process
    its partitions never makes the others' windows close early.
    """

    def __init__(self, partitions: int, lateness_s: int = 60) -> None:
        """Track ``partitions`` source partitions."""
        self.partitions = partitions
        self.lateness_s = lateness_s
        self._wm: dict[int, int] = {}
        self._idle: set[int] = set()

    def update(self, partition: int, watermark_ns: int) -> None:
        """Record a source partition's watermark (a partition with data is not idle)."""
        self._idle.discard(partition)
        if watermark_ns > self._wm.get(partition, -(2**62)):
            self._wm[partition] = watermark_ns

    def set_idle(self, partition: int) -> None:
        """The partition is caught up and silent."""
        self._idle.add(partition)

    def current_s(self) -> int | None:
        """The watermark in seconds, or None while nothing can close yet."""
        if len(set(self._wm) | self._idle) < self.partitions:
            return None  # a partition that has not spoken yet may still bring older data
        active = [wm for p, wm in self._wm.items() if p not in self._idle]
        if not active:
            return FLUSH
        return min(active) // 10**9 - self.lateness_s

    def state(self) -> dict[str, Any]:
        """Per-partition watermarks and idle partitions, for logs."""
        return {"partitions": dict(self._wm), "idle": sorted(self._idle)}
