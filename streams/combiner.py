"""The combiner's partial counts: one packet batch's counts for one counts partition.

The enrich agent turns each packet batch into, per dimension kind, packets per (minute, value)
and the distinct (minute, value, address) triples, so that unique sources can be counted
exactly per minute when partials from many batches and workers are merged. The rows are split
over the counts partitions by a hash of the counted address (:func:`shard_of`): each counts
partition owns a disjoint set of addresses, so every partition carries a similar share whatever
the value distribution (a single sensor, one dominant port), and a window's exact packets and
unique sources are the sums of the partitions' counts (:mod:`streams.merge`).

The record itself (:class:`schemas.partials.Partial`, its frame and codec) is wire vocabulary
and lives in :mod:`schemas.partials`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from schemas.partials import Partial, empty_partial
from streams.sketch import mix64

__all__ = ["MINUTE_NS", "aggregate", "shard_of"]

MINUTE_NS = 60 * 10**9

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]


def shard_of(addrs: U64, shards: int) -> npt.NDArray[np.int64]:
    """The counts partition of each address key: a 64-bit mix of it, modulo ``shards``."""
    return (mix64(addrs) % np.uint64(shards)).astype(np.int64)


def aggregate(
    kind: str,
    ts_ns: I64,
    codes: I64,
    values: Sequence[str],
    addrs: U64,
    shards: int = 1,
    addr_index: tuple[U64, npt.NDArray[np.intp]] | None = None,
) -> list[Partial]:
    """Combine rows (timestamp, value code, address) into per-minute packets and triples, one
    :class:`Partial` per counts partition (``shards`` of them; a row goes to the partition of
    its address).

    ``addr_index`` is ``np.unique(addrs, return_inverse=True)`` when the caller has it
    already (one batch's sources serve every kind); then one sort of a composite key does it.
    """
    minutes = (ts_ns // MINUTE_NS).astype(np.int64)
    if not len(minutes):
        return [empty_partial(kind) for _ in range(shards)]
    uaddr, aidx = addr_index if addr_index is not None else np.unique(addrs, return_inverse=True)
    m0 = int(minutes.min())
    nv = max(len(values), 1)
    na = max(len(uaddr), 1)
    group = (minutes - m0) * nv + codes  # (minute, value)
    ngroups = (int(minutes.max()) - m0 + 1) * nv
    key = group * na + aidx
    if shards > 1:  # the counts partition leads the key: one sort groups the rows by it
        key += shard_of(uaddr, shards)[aidx] * (ngroups * na)
    triples, per_triple = np.unique(key, return_counts=True)
    bounds = (
        np.searchsorted(triples, np.arange(shards + 1) * (ngroups * na)).tolist()
        if shards > 1
        else [0, len(triples)]
    )
    names = values if isinstance(values, list) else list(values)
    out = []
    for s in range(shards):
        a, b = bounds[s], bounds[s + 1]
        if a == b:
            out.append(empty_partial(kind))
            continue
        t, n = triples[a:b], per_triple[a:b]
        rest = t - s * (ngroups * na)
        tgroup, taddr = rest // na, rest % na
        first = np.ones(len(tgroup), dtype=bool)
        first[1:] = tgroup[1:] != tgroup[:-1]
        starts = np.flatnonzero(first)
        ukey = tgroup[starts]
        # This partition's own dictionary: only the values its rows use.
        tv = tgroup % nv
        seen = np.bincount(tv, minlength=nv) > 0
        used = np.flatnonzero(seen)
        vidx = (np.cumsum(seen) - 1)[tv].astype(np.uint32)
        out.append(
            Partial(
                kind,
                [names[i] for i in used.tolist()] if len(names) else [],
                ((ukey // nv + m0) * 60).astype(np.int64),
                vidx[starts],
                np.add.reduceat(n, starts).astype(np.uint32),
                ((tgroup // nv + m0) * 60).astype(np.int64),
                vidx,
                uaddr[taddr].astype(np.uint64),
            )
        )
    return out
