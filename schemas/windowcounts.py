"""The WindowCounts record: a counts partition's closed windows of one kind, sent to the merge
stage (darkscope.windows, keyed by kind), and its codec."""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from core.errors import UndecodableMessage
from schemas.codec import Codec, unpack_columns
from schemas.names import WINDOW_COUNTS
from schemas.partials import KINDS
from schemas.registry import default_schemas
from schemas.windowrows import HOUR, NEVER, WindowRows

__all__ = [
    "MAX_ROWS",
    "WINDOW_COUNTS",
    "WindowCounts",
    "decode_window_counts",
    "encode_window_counts",
    "window_counts_frames",
]

MAX_ROWS = 100_000  # rows per WindowCounts message (~3 MB with its dictionary)
_COLUMNS = ("size", "start", "value_idx", "packets", "sources")

I64 = npt.NDArray[np.int64]


class WindowCounts(NamedTuple):
    """One WindowCounts message: a counts partition's closed windows of one kind."""

    shard: int
    shards: int
    watermark: int  # seconds; FLUSH when the partition's input is idle
    rows: WindowRows
    horizon: int = NEVER  # seconds: the partition corrects no window ending at or before it


def encode_window_counts(
    codec: Codec, shard: int, shards: int, watermark: int, rows: WindowRows, horizon: int = NEVER
) -> bytes:
    """The WindowCounts frame; the dictionary holds only the values the rows use."""
    names = rows.values
    used: npt.NDArray[Any]
    vidx: npt.NDArray[Any]
    if len(rows) * 8 < len(names):
        used, vidx = np.unique(rows.vid, return_inverse=True)
    else:  # dense: a count per value id beats a sort
        seen = np.bincount(rows.vid, minlength=len(names)) > 0
        used = np.flatnonzero(seen)
        vidx = (np.cumsum(seen) - 1)[rows.vid]
    values = [names[i] for i in used.tolist()]
    dt = _dtypes()
    cols = {
        "size": rows.size,
        "start": rows.start,
        "value_idx": vidx,
        "packets": rows.packets,
        "sources": rows.sources,
    }
    rec: dict[str, Any] = {
        "kind": rows.kind,
        "shard": shard,
        "shards": shards,
        "watermark": watermark,
        "horizon": horizon,
        "values": values,
    }
    for name in _COLUMNS:
        rec[name] = np.asarray(cols[name]).astype(dt[name], copy=False).tobytes()
    return codec.encode(WINDOW_COUNTS, rec)


def window_counts_frames(
    codec: Codec,
    shard: int,
    shards: int,
    watermark: int,
    previous: int,
    rows: WindowRows,
    max_rows: int = MAX_ROWS,
    horizon: int = NEVER,
) -> list[bytes]:
    """The WindowCounts frames of one close, at most ``max_rows`` rows each (a replay can close
    days of windows at once). All but the last carry the ``previous`` watermark, so that the
    merge stage publishes nothing of the close before it has every piece."""
    if len(rows) <= max_rows:
        return [encode_window_counts(codec, shard, shards, watermark, rows, horizon)]
    # Cut between windows only: a window's rows sent again replace those sent before.
    first = np.ones(len(rows), dtype=bool)
    first[1:] = (rows.size[1:] != rows.size[:-1]) | (rows.start[1:] != rows.start[:-1])
    starts = np.flatnonzero(first)
    cuts = [0]
    while len(rows) - cuts[-1] > max_rows:
        nxt = int(starts[np.searchsorted(starts, cuts[-1] + max_rows, side="right") - 1])
        if nxt <= cuts[-1]:  # one window larger than max_rows goes whole
            i = np.searchsorted(starts, cuts[-1], side="right")
            nxt = int(starts[i]) if i < len(starts) else len(rows)
        if nxt >= len(rows):
            break
        cuts.append(nxt)
    bounds = [*cuts, len(rows)]
    return [
        encode_window_counts(
            codec,
            shard,
            shards,
            watermark if b == len(rows) else previous,
            rows.select(np.arange(a, b)),
            horizon,
        )
        for a, b in itertools.pairwise(bounds)
    ]


def decode_window_counts(codec: Codec, data: bytes) -> WindowCounts:
    """A WindowCounts frame, its columns checked (UndecodableMessage when they do not fit)."""
    msg = codec.decode(data)
    if msg.name != WINDOW_COUNTS:
        raise UndecodableMessage(f"{msg.name} is not WindowCounts")
    r = msg.record
    if r["kind"] not in KINDS:
        raise UndecodableMessage(f"WindowCounts of unknown kind {r['kind']!r}")
    dt = _dtypes()
    cols = unpack_columns(r, dt, len(r["start"]) // dt["start"].itemsize)
    n = len(cols["start"])
    if n and (int(cols["value_idx"].max()) >= len(r["values"]) or int(cols["size"].max()) > HOUR):
        raise UndecodableMessage("WindowCounts value index or size out of range")
    shard, shards = int(r["shard"]), int(r["shards"])
    if not 0 <= shard < shards:
        raise UndecodableMessage(f"WindowCounts from counts partition {shard} of {shards}")
    rows = WindowRows(
        str(r["kind"]),
        list(r["values"]),
        cols["size"],
        cols["start"].astype(np.int64),
        cols["value_idx"].astype(np.uint32),
        cols["packets"].astype(np.int64),
        cols["sources"].astype(np.int64),
    )
    return WindowCounts(shard, shards, int(r["watermark"]), rows, int(r["horizon"]))


_DTYPES: dict[str, np.dtype[Any]] = {}


def _dtypes() -> dict[str, np.dtype[Any]]:
    if not _DTYPES:
        fields = default_schemas()[WINDOW_COUNTS]["fields"]
        _DTYPES.update({f["name"]: np.dtype(f["dtype"]) for f in fields if "dtype" in f})
    return _DTYPES
