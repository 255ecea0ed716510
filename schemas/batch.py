"""Columnar packet batches: one NumPy array per packet field, as the PacketBatch schema says.

The column names and dtypes come from the ``dtype`` attribute of the PacketBatch fields in
``packet_batch.avsc``; nothing here repeats them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import SchemaMismatch
from schemas.names import PACKET_BATCH
from schemas.registry import default_schemas

__all__ = [
    "ADDRESS6_COLUMNS",
    "PacketBatch",
    "batch_from_events",
    "column_dtypes",
    "format_address",
    "event_to_row",
    "row_to_event",
]

# Empty on the wire when the batch has no IPv6 packet.
ADDRESS6_COLUMNS = ("src6", "dst6", "inner_src6", "inner_dst6")
_INNER6 = ("inner_src6", "inner_dst6")

Array = npt.NDArray[Any]


@cache
def column_dtypes() -> dict[str, np.dtype[Any]]:
    """Packet column name -> NumPy dtype, in schema order."""
    schema = default_schemas()[PACKET_BATCH]
    return {f["name"]: np.dtype(f["dtype"]) for f in schema["fields"] if "dtype" in f}


@dataclass(frozen=True, eq=False)
class PacketBatch:
    """Packets of one sensor, column by column (every column has ``len(batch)`` rows)."""

    sensor_id: str
    batch_seq: int
    columns: Mapping[str, Array] = field(repr=False)

    def __post_init__(self) -> None:
        dtypes = column_dtypes()
        missing = set(dtypes) - set(self.columns)
        extra = set(self.columns) - set(dtypes)
        if missing or extra:
            raise SchemaMismatch(
                f"batch columns differ from the schema: missing {sorted(missing)}, unknown {sorted(extra)}"
            )
        n = len(self.columns["ts"])
        for name, arr in self.columns.items():
            if arr.dtype != dtypes[name]:
                raise SchemaMismatch(f"column {name} has dtype {arr.dtype}, schema says {dtypes[name]}")
            if arr.shape != (n,):
                raise SchemaMismatch(f"column {name} has shape {arr.shape}, expected ({n},)")

    def __len__(self) -> int:
        return len(self.columns["ts"])

    def __getitem__(self, name: str) -> Array:
        return self.columns[name]

    @classmethod
    def zeros(cls, sensor_id: str, batch_seq: int, n: int) -> PacketBatch:
        """A batch of ``n`` all-zero packets (fill the columns afterwards)."""
        cols = {name: np.zeros(n, dtype=dt) for name, dt in column_dtypes().items()}
        cols["tcp_wscale"][:] = 255
        return cls(sensor_id, batch_seq, cols)

    @classmethod
    def concat(cls, batches: Iterable[PacketBatch], sensor_id: str, batch_seq: int) -> PacketBatch:
        """Join batches row-wise into one."""
        parts = list(batches)
        cols = {
            name: np.concatenate([b.columns[name] for b in parts]) if parts else np.zeros(0, dtype=dt)
            for name, dt in column_dtypes().items()
        }
        return cls(sensor_id, batch_seq, cols)

    def slice(self, start: int, stop: int, batch_seq: int | None = None) -> PacketBatch:
        """Rows ``start:stop`` as a new batch (views, no copy)."""
        seq = self.batch_seq if batch_seq is None else batch_seq
        return PacketBatch(self.sensor_id, seq, {k: v[start:stop] for k, v in self.columns.items()})

    def take(self, mask_or_index: Array) -> PacketBatch:
        """The rows selected by a boolean mask or index array."""
        return PacketBatch(
            self.sensor_id, self.batch_seq, {k: v[mask_or_index] for k, v in self.columns.items()}
        )

    def rows(self) -> list[dict[str, Any]]:
        """Per-packet dicts in PacketEvent form (slow; for tests, interop and display)."""
        return [row_to_event(self, i) for i in range(len(self))]


def _addr(batch: PacketBatch, i: int, which: str) -> bytes:
    if int(batch.columns["ip_version"][i]) == 6:
        return bytes(batch.columns[f"{which}6"][i].tobytes())
    return int(batch.columns[which][i]).to_bytes(4, "big")


def row_to_event(batch: PacketBatch, i: int) -> dict[str, Any]:
    """Row ``i`` of a batch as a PacketEvent record."""
    ev: dict[str, Any] = {
        "sensor_id": batch.sensor_id,
        "src_addr": _addr(batch, i, "src"),
        "dst_addr": _addr(batch, i, "dst"),
    }
    for name in column_dtypes():
        if name in ("src", "dst", *ADDRESS6_COLUMNS):
            continue
        ev[name] = int(batch.columns[name][i])
    for name in _INNER6:  # only an ICMPv6 error quotes an IPv6 datagram
        raw = bytes(batch.columns[name][i].tobytes())
        ev[name] = raw if any(raw) else b""
    # Avro long is signed: carry the unsigned 64-bit option-kinds word as two's complement.
    ev["tcp_opt_kinds"] = int(np.uint64(ev["tcp_opt_kinds"]).astype(np.int64))
    return ev


def event_to_row(ev: Mapping[str, Any]) -> dict[str, Any]:
    """A PacketEvent record as column values for one row (inverse of row_to_event)."""
    row: dict[str, Any] = {k: v for k, v in ev.items() if k not in ("sensor_id", "src_addr", "dst_addr")}
    version = int(ev["ip_version"])
    src, dst = bytes(ev["src_addr"]), bytes(ev["dst_addr"])
    want = 4 if version == 4 else 16
    if len(src) != want or len(dst) != want:
        raise SchemaMismatch(f"IPv{version} event with {len(src)}/{len(dst)}-byte addresses")
    if version == 4:
        row.update(
            src=int.from_bytes(src, "big"), dst=int.from_bytes(dst, "big"), src6=bytes(16), dst6=bytes(16)
        )
    else:
        row.update(src=0, dst=0, src6=src, dst6=dst)
    row["tcp_opt_kinds"] = int(ev["tcp_opt_kinds"]) & 0xFFFFFFFFFFFFFFFF
    for name in _INNER6:
        raw = bytes(ev.get(name) or bytes(16))
        if len(raw) != 16:
            raise SchemaMismatch(f"{name} of {len(raw)} bytes")
        row[name] = raw
    # Version-1 events (or readers' defaults): the 16-bit length, the reserved bit in ip_flags.
    row.setdefault("caplen", 0)
    row.setdefault("truncated", 0)
    if int(ev.get("total_length", -1)) < 0:
        row["total_length"] = int(ev["length"])
    if int(ev.get("ip_reserved", -1)) < 0:
        flags = int(ev["ip_flags"])
        row["ip_reserved"] = (flags >> 2) & 1 if version == 4 else 0
        row["ip_flags"] = flags & 3 if version == 4 else flags
    return row


def batch_from_events(events: Iterable[Mapping[str, Any]], batch_seq: int = 0) -> PacketBatch:
    """Build a batch from PacketEvent records of one sensor."""
    evs = list(events)
    sensor = str(evs[0]["sensor_id"]) if evs else ""
    rows = [event_to_row(e) for e in evs]
    cols: dict[str, Array] = {}
    for name, dt in column_dtypes().items():
        if name in ADDRESS6_COLUMNS:
            cols[name] = np.frombuffer(b"".join(r[name] for r in rows), dtype=dt).copy()
        else:
            try:
                cols[name] = np.array([r[name] for r in rows], dtype=dt)
            except (OverflowError, ValueError) as exc:
                raise SchemaMismatch(f"column {name}: {exc}") from exc
    return PacketBatch(sensor, batch_seq, cols)


def format_address(version: int, v4: int, v6: bytes) -> str:
    """Text form of an address held in batch columns."""
    if version == 6:
        return str(ipaddress.IPv6Address(v6))
    return str(ipaddress.IPv4Address(v4))
