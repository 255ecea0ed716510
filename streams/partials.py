"""The combiner's partial counts: one packet batch's counts for one counts partition.

The enrich agent turns each packet batch into, per dimension kind, packets per (minute, value)
and the distinct (minute, value, address) triples, so that unique sources can be counted
exactly per minute when partials from many batches and workers are merged. The rows are split
over the counts partitions by a hash of the counted address (:func:`shard_of`): each counts
partition owns a disjoint set of addresses, so every partition carries a similar share whatever
the value distribution (a single sensor, one dominant port), and a window's exact packets and
unique sources are the sums of the partitions' counts (:mod:`streams.merge`).

This module is the home of the PartialCounts record: :class:`Partial` (one kind's rows),
:class:`PartialFrame` (one message), its codec and the idle marker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from darkscope.errors import UndecodableMessage
from schemas.codec import Codec, unpack_columns
from schemas.registry import default_schemas
from streams.sketch import mix64

__all__ = [
    "EMPTY",
    "IDLE",
    "KINDS",
    "PARTIAL_COUNTS",
    "Partial",
    "PartialFrame",
    "aggregate",
    "decode_frame",
    "empty_partial",
    "encode_frame",
    "idle_marker",
    "shard_of",
]

PARTIAL_COUNTS = "darkscope.PartialCounts"
KINDS = ("port", "region", "fp_region", "sensor", "victim")
MINUTE_NS = 60 * 10**9
IDLE = -1  # the watermark of a PartialCounts that marks its source partition idle
EMPTY = -2  # ... idle, and it never had any data

I64 = npt.NDArray[np.int64]
U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]

_COLUMNS = ("minute", "value_idx", "packets", "pair_minute", "pair_value_idx", "pair_addr")


@dataclass(frozen=True)
class Partial:
    """Counts of one batch for one dimension kind (one KindCounts of a PartialCounts)."""

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


def empty_partial(kind: str) -> Partial:
    """A partial without rows."""
    i, u = np.zeros(0, np.int64), np.zeros(0, np.uint32)
    return Partial(kind, [], i, u, u, i, u, np.zeros(0, np.uint64))


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


class PartialFrame(NamedTuple):
    """One PartialCounts message: a packet batch's rows for one counts partition."""

    partials: tuple[Partial, ...]  # kinds with rows
    source_partition: int  # packets partition (-1: none)
    watermark: int  # ns, or IDLE / EMPTY for an idle marker
    source_offset: int  # offset of the packet batch in its partition (-1: a marker)
    shard: int = 0
    shards: int = 1

    @property
    def total_packets(self) -> int:
        """Packets counted in this frame, once per kind."""
        return sum(p.total_packets for p in self.partials)


_DTYPES: dict[str, np.dtype[Any]] = {}


def _dtypes() -> dict[str, np.dtype[Any]]:
    if not _DTYPES:
        fields = default_schemas()[PARTIAL_COUNTS]["fields"]
        kinds = next(f for f in fields if f["name"] == "kinds")
        _DTYPES.update(
            {f["name"]: np.dtype(f["dtype"]) for f in kinds["type"]["items"]["fields"] if "dtype" in f}
        )
    return _DTYPES


def encode_frame(codec: Codec, frame: PartialFrame, source_topic: str = "") -> bytes:
    """The PartialCounts frame of ``frame`` (kinds without rows are left out)."""
    dt = _dtypes()
    kinds = []
    for p in frame.partials:
        if not len(p.minute) and not len(p.pair_minute):
            continue
        rec: dict[str, Any] = {"kind": p.kind, "values": p.values}
        for name in _COLUMNS:
            arr = getattr(p, name)
            rec[name] = (arr if arr.dtype == dt[name] else arr.astype(dt[name])).tobytes()
        kinds.append(rec)
    return codec.encode(
        PARTIAL_COUNTS,
        {
            "source_topic": source_topic,
            "source_partition": frame.source_partition,
            "source_offset": frame.source_offset,
            "watermark": frame.watermark,
            "shard": frame.shard,
            "shards": frame.shards,
            "kinds": kinds,
        },
    )


def idle_marker(codec: Codec, source_partition: int, shard: int, shards: int, empty: bool = False) -> bytes:
    """The frame that tells counts partition ``shard`` its source partition is idle (``empty``:
    the partition never had any data)."""
    return encode_frame(
        codec, PartialFrame((), source_partition, EMPTY if empty else IDLE, -1, shard, shards)
    )


def decode_frame(codec: Codec, data: bytes) -> PartialFrame:
    """A PartialCounts frame, its columns checked (UndecodableMessage when they do not fit)."""
    msg = codec.decode(data)
    if msg.name != PARTIAL_COUNTS:
        raise UndecodableMessage(f"{msg.name} is not PartialCounts")
    r = msg.record
    dt = _dtypes()
    partials = []
    for k in r["kinds"]:
        if k["kind"] not in KINDS:
            raise UndecodableMessage(f"PartialCounts of unknown kind {k['kind']!r}")
        cols = unpack_columns(k, dt)
        if not (len(cols["minute"]) == len(cols["value_idx"]) == len(cols["packets"])) or not (
            len(cols["pair_minute"]) == len(cols["pair_value_idx"]) == len(cols["pair_addr"])
        ):
            raise UndecodableMessage("PartialCounts columns of unequal length")
        nvals = len(k["values"])
        if (len(cols["value_idx"]) and int(cols["value_idx"].max()) >= nvals) or (
            len(cols["pair_value_idx"]) and int(cols["pair_value_idx"].max()) >= nvals
        ):
            raise UndecodableMessage("PartialCounts value index out of range")
        partials.append(Partial(str(k["kind"]), list(k["values"]), **cols))
    shard, shards = int(r["shard"]), int(r["shards"])
    if not 0 <= shard < shards:
        raise UndecodableMessage(f"PartialCounts for counts partition {shard} of {shards}")
    return PartialFrame(
        tuple(partials),
        int(r["source_partition"]),
        int(r["watermark"]),
        int(r["source_offset"]),
        shard,
        shards,
    )
