"""Every hour window of a kind in columns, for :class:`streams.windows.KindWindows`: packets
per (hour, value) and a sparse HyperLogLog per (hour, value) (:mod:`streams.sketch`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from streams.sketch import HLL_P, INV_POW2, estimate, hll_positions

__all__ = ["Hours", "distinct", "first_of_runs"]

I64 = npt.NDArray[np.int64]
U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]


def first_of_runs(*sorted_keys: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Mask of the first row of every run of equal keys (keys already sorted together)."""
    n = len(sorted_keys[0])
    first = np.ones(n, dtype=bool)
    if n > 1:
        differs = np.zeros(n - 1, dtype=bool)
        for k in sorted_keys:
            differs |= k[1:] != k[:-1]
        first[1:] = differs
    return first


def distinct(values: I64) -> list[int]:
    """The distinct values of an array whose equal values are adjacent (sorted or grouped)."""
    return list(values[first_of_runs(values)].tolist()) if len(values) else []


_VID_BITS = 26  # value ids below 2^26 (67M values); hours since the epoch below 2^20 (year 2089)


class Hours:
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
            for hour in distinct(hours):
                # An hour closed already (a flush closes hours whose later minutes are not
                # late) takes its closed rows back first, or it would close again without them.
                self.reopen(hour)
            self._pk.append((hours, vids, packets))
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
        starts = np.flatnonzero(first_of_runs(g)) if len(g) else np.zeros(0, np.intp)
        g, n = g[starts], np.add.reduceat(n, starts) if len(n) else n
        # Sketch estimates per (hour, value): zero registers and the sum of 2^-rank.
        owner = keys >> HLL_P
        ostarts = np.flatnonzero(first_of_runs(owner)) if len(owner) else np.zeros(0, np.intp)
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

    def vids(self) -> list[U32]:
        """The value ids the open and retained hours use (with repeats)."""
        mask = (1 << _VID_BITS) - 1
        out = [pk[1] for pk in self._pk] + [((k >> HLL_P) & mask).astype(np.uint32) for k, _ in self._sk]
        for _, pk, sk in self._done:
            out += [pk[1], ((sk[0] >> HLL_P) & mask).astype(np.uint32)]
        return out

    def renumber(self, remap: U32) -> None:
        """Map every value id through ``remap`` (an order-keeping map: sorted keys stay sorted)."""
        mask = (1 << _VID_BITS) - 1

        def keys(k: I64) -> I64:
            vid: I64 = remap[(k >> HLL_P) & mask].astype(np.int64)
            out: I64 = (k & ~(mask << HLL_P)) | (vid << HLL_P)
            return out

        self._pk = [(h, remap[v], n) for h, v, n in self._pk]
        self._sk = [(keys(k), r) for k, r in self._sk]
        self._done = [
            (newest, (pk[0], remap[pk[1]], pk[2]), (keys(sk[0]), sk[1])) for newest, pk, sk in self._done
        ]

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
    starts = np.flatnonzero(first_of_runs(keys))
    return keys[starts], np.maximum.reduceat(ranks, starts)
