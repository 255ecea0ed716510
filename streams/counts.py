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

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
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
    kind: str, ts_ns: npt.NDArray[np.int64], codes: npt.NDArray[np.int64], values: Sequence[str], addrs: U64
) -> Partial:
    """Combine rows (timestamp, value code, address) into per-minute packets and triples."""
    minutes = (ts_ns // MINUTE_NS).astype(np.int64)
    if not len(minutes):
        empty_i, empty_u = np.zeros(0, np.int64), np.zeros(0, np.uint32)
        return Partial(
            kind, list(values), empty_i, empty_u, empty_u, empty_i, empty_u, np.zeros(0, np.uint64)
        )
    m0 = int(minutes.min())
    nv = max(len(values), 1)
    key = (minutes - m0) * nv + codes
    ukey, counts = np.unique(key, return_counts=True)
    order = np.lexsort((addrs, key))
    k_sorted, a_sorted = key[order], addrs[order]
    first = np.ones(len(k_sorted), dtype=bool)
    first[1:] = (k_sorted[1:] != k_sorted[:-1]) | (a_sorted[1:] != a_sorted[:-1])
    pk, pa = k_sorted[first], a_sorted[first]
    return Partial(
        kind,
        list(values),
        ((ukey // nv + m0) * 60).astype(np.int64),
        (ukey % nv).astype(np.uint32),
        counts.astype(np.uint32),
        ((pk // nv + m0) * 60).astype(np.int64),
        (pk % nv).astype(np.uint32),
        pa.astype(np.uint64),
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
    # rank = leading zeros of `rest` + 1; float64 log2 is exact enough for the top bit.
    bitlen = np.floor(np.log2(rest.astype(np.float64))).astype(np.int64) + 1
    return idx, (65 - bitlen).astype(np.uint8)


def hll_update(registers: npt.NDArray[np.uint8], addrs: U64) -> None:
    """Add addresses to a HyperLogLog register array of 2^HLL_P bytes (in place)."""
    if not len(addrs):
        return
    idx, rank = hll_positions(addrs)
    np.maximum.at(registers, idx, rank)


def hll_estimate(registers: npt.NDArray[np.uint8]) -> int:
    """Cardinality estimate (Flajolet et al. 2007, with the small-range correction)."""
    m = len(registers)
    alpha = 0.7213 / (1 + 1.079 / m)
    raw = alpha * m * m / float(np.sum(np.ldexp(1.0, -registers.astype(np.int64))))
    zeros = int(np.count_nonzero(registers == 0))
    if raw <= 2.5 * m and zeros:
        return round(m * math.log(m / zeros))
    return round(raw)


# -- windows ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClosedWindow:
    """Final counts of one window: value -> (packets, unique addresses)."""

    kind: str
    size: str  # "1m" or "1h"
    start: int  # seconds since the epoch, UTC
    counts: dict[str, tuple[int, int]]
    revision: int = 0  # 0 when first closed; n when late rows re-closed it for the n-th time

    @property
    def end(self) -> int:
        """Exclusive end, seconds since the epoch."""
        return self.start + (60 if self.size == "1m" else 3600)


@dataclass
class _Minute:
    packets: dict[int, int] = field(default_factory=dict)
    pair_values: list[U32] = field(default_factory=list)
    pair_addrs: list[U64] = field(default_factory=list)


@dataclass
class _Hour:
    packets: dict[int, int] = field(default_factory=dict)
    rows: dict[int, int] = field(default_factory=dict)  # value id -> row of ``regs``
    regs: npt.NDArray[np.uint8] = field(default_factory=lambda: np.zeros((0, 1 << HLL_P), np.uint8))

    def add_sources(self, values: U32, addrs: U64) -> None:
        """Fold (value, address) pairs into the per-value HyperLogLogs, in one NumPy pass."""
        for vid in np.unique(values).tolist():
            if vid not in self.rows:
                self.rows[vid] = len(self.rows)
        if len(self.rows) > len(self.regs):  # grow by doubling: few reallocations per hour
            grown = np.zeros((max(2 * len(self.regs), len(self.rows), 8), 1 << HLL_P), np.uint8)
            grown[: len(self.regs)] = self.regs
            self.regs = grown
        lookup = np.zeros(int(values.max()) + 1, dtype=np.int64)
        for vid, row in self.rows.items():
            if vid < len(lookup):
                lookup[vid] = row
        idx, rank = hll_positions(addrs)
        np.maximum.at(self.regs, (lookup[values], idx), rank)

    def sources(self, vid: int) -> int:
        """Estimated distinct addresses of one value."""
        row = self.rows.get(vid)
        return 0 if row is None else hll_estimate(self.regs[row])


class KindWindows:
    """Open 1-minute and 1-hour windows of one dimension kind, closed by a watermark.

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
        self._done_minutes: dict[int, _Minute] = {}
        self._done_hours: dict[int, _Hour] = {}
        self._revision: dict[tuple[str, int], int] = {}
        self.reopened = 0
        self.values: list[str] = []
        self._ids: dict[str, int] = {}
        self._minutes: dict[int, _Minute] = {}
        self._hours: dict[int, _Hour] = {}
        self.closed_before = -(2**62)  # every minute starting before this is closed
        self.late_packets = 0
        self.packets_added = 0
        self.max_minute = -(2**62)  # start of the latest minute that received rows

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
        vid = gids[p.value_idx]
        late = p.minute < self.closed_before
        if late.any():
            for minute in np.unique(p.minute[late]).tolist():
                if not self._reopen(int(minute)):
                    continue
                late[p.minute == minute] = False
            self.late_packets += int(p.packets[late].sum())
        for minute in np.unique(p.minute[~late]):
            m = self._minutes.setdefault(int(minute), _Minute())
            sel = p.minute == minute
            for v, n in zip(vid[sel].tolist(), p.packets[sel].tolist(), strict=True):
                m.packets[v] = m.packets.get(v, 0) + n
            psel = p.pair_minute == minute
            m.pair_values.append(gids[p.pair_value_idx[psel]])
            m.pair_addrs.append(p.pair_addr[psel])
        self.packets_added += int(p.packets[~late].sum())
        if (~late).any():
            self.max_minute = max(self.max_minute, int(p.minute[~late].max()))

    def _reopen(self, minute: int) -> bool:
        """Bring a closed minute (and its hour) back to accept late rows; False if forgotten."""
        if minute in self._minutes:
            return True
        m = self._done_minutes.pop(minute, None)
        if m is None:
            if minute < self.max_minute + 60 - self.retention_s:
                return False
            m = _Minute()  # a minute that had no rows when the watermark passed it
        hour_start = minute - minute % 3600
        hour = self._hours.get(hour_start) or self._done_hours.pop(hour_start, None) or _Hour()
        self._hours[hour_start] = hour
        # The minute is closed again later and adds its packets to the hour anew; the HLL
        # registers need no correction (adding the same addresses again changes nothing).
        for vid, n in m.packets.items():
            hour.packets[vid] -= n
        self._minutes[minute] = m
        self.reopened += 1
        return True

    def open_minutes(self) -> list[int]:
        """Start times of the minutes still open."""
        return sorted(self._minutes)

    def close_until(self, watermark_s: int) -> list[ClosedWindow]:
        """Close every window that ends at or before ``watermark_s``; return them in order."""
        closed: list[ClosedWindow] = []
        boundary = watermark_s - watermark_s % 60
        for start in sorted(s for s in self._minutes if s + 60 <= watermark_s):
            closed.append(self._close_minute(start))
        # A flush (watermark at "infinity") closes what exists without making all future
        # data late: later rows are late only if they fall in a minute that was closed.
        self.closed_before = max(self.closed_before, min(boundary, self.max_minute + 60))
        for hour in sorted(h for h in self._hours if h + 3600 <= watermark_s):
            closed.append(self._close_hour(hour))
        horizon = min(watermark_s, self.max_minute + 60) - self.retention_s
        for start in [s for s in self._done_minutes if s < horizon]:
            del self._done_minutes[start]
        for start in [h for h in self._done_hours if h + 3600 <= horizon]:
            del self._done_hours[start]
        return closed

    def _next_revision(self, size: str, start: int) -> int:
        rev = self._revision.get((size, start), -1) + 1
        self._revision[(size, start)] = rev
        if len(self._revision) > 4 * (self.retention_s // 60 + 200):
            oldest = min(s for _, s in self._revision)
            self._revision = {k: r for k, r in self._revision.items() if k[1] > oldest}
        return rev

    def _close_minute(self, start: int) -> ClosedWindow:
        m = self._minutes.pop(start)
        values = np.concatenate(m.pair_values) if m.pair_values else np.zeros(0, np.uint32)
        addrs = np.concatenate(m.pair_addrs) if m.pair_addrs else np.zeros(0, np.uint64)
        order = np.lexsort((addrs, values))
        v, a = values[order], addrs[order]
        first = np.ones(len(v), dtype=bool)
        first[1:] = (v[1:] != v[:-1]) | (a[1:] != a[:-1])
        v, a = v[first], a[first]
        uniq = np.bincount(v, minlength=len(self.values)) if len(v) else np.zeros(0, np.int64)
        hour = self._hours.setdefault(start - start % 3600, _Hour())
        for vid, n in m.packets.items():
            hour.packets[vid] = hour.packets.get(vid, 0) + n
        if len(v):
            hour.add_sources(v, a)
        counts = {
            self.values[vid]: (n, int(uniq[vid]) if vid < len(uniq) else 0) for vid, n in m.packets.items()
        }
        # Keep the deduplicated minute in case late rows reopen it.
        self._done_minutes[start] = _Minute(m.packets, [v], [a])
        return ClosedWindow(self.kind, "1m", start, counts, self._next_revision("1m", start))

    def _close_hour(self, start: int) -> ClosedWindow:
        h = self._hours.pop(start)
        counts = {self.values[vid]: (n, h.sources(vid)) for vid, n in h.packets.items() if n}
        self._done_hours[start] = h
        return ClosedWindow(self.kind, "1h", start, counts, self._next_revision("1h", start))

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
