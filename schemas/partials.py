"""The PartialCounts record (darkscope.counts): one packet batch's counts for one counts
partition, as the enrich agent sends them and the count agent reads them.

:class:`Partial` is one dimension kind's rows: packets per (minute, value) and the distinct
(minute, value, address) triples; :class:`PartialFrame` is one message (every kind with rows,
the source partition's watermark, the batch's offset, the counts partition it is for). An
idle marker is a frame without rows whose watermark is :data:`IDLE` (its source partition is
caught up and silent) or :data:`EMPTY` (... and never had data). How the rows are made and
split over counts partitions is :mod:`streams.combiner`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from core.errors import UndecodableMessage
from schemas.codec import Codec, unpack_columns
from schemas.names import PARTIAL_COUNTS
from schemas.registry import default_schemas

__all__ = [
    "EMPTY",
    "IDLE",
    "KINDS",
    "PARTIAL_COUNTS",
    "Partial",
    "PartialFrame",
    "decode_frame",
    "empty_partial",
    "encode_frame",
    "idle_marker",
]

KINDS = ("port", "region", "fp_region", "sensor", "victim")
IDLE = -1  # the watermark of a PartialCounts that marks its source partition idle
EMPTY = -2  # ... idle, and it never had any data

I64 = npt.NDArray[np.int64]
U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]

_COLUMNS = ("minute", "value_idx", "packets", "pair_minute", "pair_value_idx", "pair_addr")
_MAX_MINUTE = 2**36  # seconds (the year 4147): later minutes are corrupt, and keys stay in int64


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


def _check_minutes(cols: dict[str, Any], nvals: int) -> None:
    """The count agent's assumptions about a kind's rows (a frame breaking them crashed it;
    found by fuzzing the count agent): minutes are whole minutes since the epoch, and the
    (minute, value)s of the packet rows are those of the address pairs, as the combiner
    makes them (every packet counted has its address, every address its packets)."""
    for name in ("minute", "pair_minute"):
        m = cols[name]
        if len(m) and (int(m.min()) < 0 or int(m.max()) >= _MAX_MINUTE or bool((m % 60).any())):
            raise UndecodableMessage(f"PartialCounts {name} holds values that are not minutes")
    n = max(nvals, 1)
    rows = _distinct(cols["minute"] * n + cols["value_idx"])
    pairs = _distinct(cols["pair_minute"] * n + cols["pair_value_idx"])
    if not np.array_equal(rows, pairs):
        raise UndecodableMessage(
            "PartialCounts packet rows and address pairs name different minutes or values"
        )


def _distinct(keys: I64) -> I64:
    """The distinct keys, sorted: one pass over the sorted runs the combiner writes, a sort
    only for a frame written otherwise."""
    if len(keys) > 1:
        step = np.diff(keys)
        if bool((step < 0).any()):
            return np.unique(keys)
        return keys[np.concatenate(([True], step != 0))]
    return keys


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
        _check_minutes(cols, nvals)
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
