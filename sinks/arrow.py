"""EnrichedBatch -> Arrow table with the ``packets`` table's columns, without per-row Python.

Packet columns become Arrow arrays over the same NumPy buffers (no copy where the dtype
already fits); dictionary-encoded enrichments (region, AS organisation, service) stay
dictionary-encoded, which ClickHouse reads straight into ``LowCardinality`` columns; values
constant over a batch (sensor, database versions, source topic) are one-entry dictionaries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from core.errors import UndecodableMessage
from schemas.batch import PacketBatch
from schemas.codec import Codec, column_dtypes_of, unpack_columns
from schemas.enriched import Enriched
from schemas.names import ENRICHED_BATCH
from schemas.registry import default_schemas

__all__ = [
    "EnrichedColumns",
    "arrow_table",
    "columns_from_enriched",
    "columns_from_record",
    "merged_dictionary",
]

Array = npt.NDArray[Any]

# Packet columns stored as they are (name -> Arrow type); addresses are handled apart.
_PLAIN = {
    "ip_version": pa.uint8(),
    "protocol": pa.uint8(),
    "sport": pa.uint16(),
    "dport": pa.uint16(),
    "tcp_flags": pa.uint8(),
    "tcp_seq": pa.uint32(),
    "tcp_ack": pa.uint32(),
    "tcp_window": pa.uint16(),
    "tcp_opt_len": pa.uint8(),
    "tcp_opt_kinds": pa.uint64(),
    "tcp_mss": pa.uint16(),
    "tcp_wscale": pa.uint8(),
    "ip_id": pa.uint16(),
    "ttl": pa.uint8(),
    "ip_flags": pa.uint8(),
    "frag_offset": pa.uint16(),
    "ip_reserved": pa.uint8(),
    "caplen": pa.uint32(),
    "truncated": pa.uint8(),
    "icmp_type": pa.uint8(),
    "icmp_code": pa.uint8(),
    "inner_protocol": pa.uint8(),
    "inner_sport": pa.uint16(),
    "inner_dport": pa.uint16(),
}
# IPv4 columns: the batch holds the address as an integer; Arrow carries it as UInt32 and
# ClickHouse casts UInt32 -> IPv4 on insert.
_IPV4 = ("src", "dst", "inner_src", "inner_dst")
_IPV6 = ("src6", "dst6", "inner_src6", "inner_dst6")
_TS = pa.timestamp("ns", tz="UTC")
_IPV6_TYPE = pa.binary(16)


@dataclass(frozen=True, eq=False)
class EnrichedColumns:
    """One enriched batch as the columns of the ``packets`` table (NumPy + dictionaries)."""

    batch: PacketBatch
    source_topic: str
    source_partition: int
    source_offset: int
    geo_db_version: str
    asn_db_version: str
    regions: list[str]
    region_names: list[str]
    region_idx: Array
    asn: Array
    as_orgs: list[str]
    as_org_idx: Array
    services: list[str]
    service_idx: Array
    fp_flags: Array
    fp_verdict: Array

    def __len__(self) -> int:
        return len(self.batch)

    @property
    def dedup_token(self) -> str:
        """The batch's identity: where the packet batch was read (stable across retries)."""
        return f"{self.source_topic}:{self.source_partition}:{self.source_offset}"


_ENRICHED_DTYPES: dict[str, np.dtype[Any]] = {}


def _enriched_dtypes() -> dict[str, np.dtype[Any]]:
    if not _ENRICHED_DTYPES:
        _ENRICHED_DTYPES.update(column_dtypes_of(default_schemas()[ENRICHED_BATCH]))
    return _ENRICHED_DTYPES


def _check_index(name: str, idx: Array, dictionary: Sequence[str]) -> None:
    if len(idx) and int(idx.max()) >= len(dictionary):
        raise UndecodableMessage(f"{name} index {int(idx.max())} outside its dictionary of {len(dictionary)}")


def columns_from_record(codec: Codec, rec: Mapping[str, Any]) -> EnrichedColumns:
    """Columns of a decoded EnrichedBatch record (UndecodableMessage when inconsistent)."""
    try:
        batch = codec.batch_from_record(rec["packets"])
        cols = unpack_columns(rec, _enriched_dtypes(), rows=len(batch))
        out = EnrichedColumns(
            batch,
            str(rec["source_topic"]),
            int(rec["source_partition"]),
            int(rec["source_offset"]),
            str(rec["geo_db_version"]),
            str(rec["asn_db_version"]),
            list(rec["regions"]),
            list(rec["region_names"]),
            cols["region_idx"],
            cols["asn"],
            list(rec["as_orgs"]),
            cols["as_org_idx"],
            list(rec["services"]),
            cols["service_idx"],
            cols["fp_flags"],
            cols["fp_verdict"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UndecodableMessage(f"EnrichedBatch record is incomplete: {exc!r}") from exc
    if len(out.regions) != len(out.region_names):
        raise UndecodableMessage("regions and region_names differ in length")
    _check_index("region_idx", out.region_idx, out.regions)
    _check_index("as_org_idx", out.as_org_idx, out.as_orgs)
    _check_index("service_idx", out.service_idx, out.services)
    return out


def columns_from_enriched(e: Enriched, geo_db_version: str = "", asn_db_version: str = "") -> EnrichedColumns:
    """Columns of an in-memory :class:`streams.enrich.Enriched` (tests, local pipelines)."""
    g = e.geo
    return EnrichedColumns(
        e.batch,
        e.source_topic,
        e.source_partition,
        e.source_offset,
        geo_db_version,
        asn_db_version,
        list(g.regions),
        list(g.region_names),
        np.asarray(g.region_idx),
        np.asarray(g.asn),
        list(g.as_orgs),
        np.asarray(g.as_org_idx),
        list(e.services),
        np.asarray(e.service_idx),
        np.asarray(e.fp_flags),
        np.asarray(e.fp_verdict),
    )


def _dict(idx: Array, values: Sequence[str]) -> pa.DictionaryArray:
    indices = pa.array(np.ascontiguousarray(idx).astype(np.int32, copy=False))
    return pa.DictionaryArray.from_arrays(indices, pa.array(list(values) or [""], pa.string()))


def _const(n: int, value: str) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([value], pa.string()))


def _ipv6(col: Array) -> pa.Array:
    raw = np.ascontiguousarray(col).view(np.uint8)
    return pa.FixedSizeBinaryArray.from_buffers(_IPV6_TYPE, len(col), [None, pa.py_buffer(raw)])


def _concat(parts: Sequence[EnrichedColumns], get: Any) -> Array:
    arrays = [get(p) for p in parts]
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def merged_dictionary(
    parts: Sequence[EnrichedColumns], idx_of: Any, values_of: Any, names_of: Any = None
) -> tuple[Array, list[str], list[str]]:
    """One dictionary for several batches: remap each batch's codes into the union."""
    values: dict[str, int] = {}
    names: list[str] = []
    codes = []
    for p in parts:
        vals = values_of(p)
        pnames = names_of(p) if names_of else vals
        remap = np.empty(max(len(vals), 1), np.int32)
        for i, (v, nm) in enumerate(zip(vals, pnames, strict=True)):
            if v not in values:
                values[v] = len(values)
                names.append(nm)
            remap[i] = values[v]
        codes.append(remap[idx_of(p)])
    return (codes[0] if len(codes) == 1 else np.concatenate(codes)), list(values), names


def _const_column(parts: Sequence[EnrichedColumns], value_of: Any) -> pa.DictionaryArray:
    vals = [value_of(p) for p in parts]
    if len(set(vals)) == 1:
        return _const(sum(len(p) for p in parts), vals[0])
    uniq = sorted(set(vals))
    idx = np.concatenate([np.full(len(p), uniq.index(v), np.int32) for p, v in zip(parts, vals, strict=True)])
    return pa.DictionaryArray.from_arrays(pa.array(idx), pa.array(uniq, pa.string()))


def arrow_table(parts: Sequence[EnrichedColumns]) -> pa.Table:
    """The ``packets`` rows of one or more enriched batches as one Arrow table."""
    n = sum(len(p) for p in parts)
    data: dict[str, pa.Array] = {}
    ts = _concat(parts, lambda p: p.batch["ts"])
    data["ts"] = pa.Array.from_buffers(_TS, n, [None, pa.py_buffer(np.ascontiguousarray(ts))])
    data["sensor"] = _const_column(parts, lambda p: p.batch.sensor_id)
    data["batch_seq"] = pa.array(_concat(parts, lambda p: np.full(len(p), p.batch.batch_seq, np.uint64)))
    for name in _IPV4:
        data[name] = pa.array(_concat(parts, lambda p, c=name: p.batch[c]), pa.uint32())
    for name in _IPV6:
        data[name] = _ipv6(_concat(parts, lambda p, c=name: p.batch[c]))
    for name, typ in _PLAIN.items():
        data[name] = pa.array(_concat(parts, lambda p, c=name: p.batch[c]), typ)
    # The 32-bit length (the batch's ``length`` is PacketBatch version 1's clipped copy).
    data["length"] = pa.array(_concat(parts, lambda p: p.batch["total_length"]), pa.uint32())
    codes, services, _ = merged_dictionary(parts, lambda p: p.service_idx, lambda p: p.services)
    data["service"] = _dict(codes, services)
    codes, regions, region_names = merged_dictionary(
        parts, lambda p: p.region_idx, lambda p: p.regions, lambda p: p.region_names
    )
    data["region"] = _dict(codes, regions)
    data["region_name"] = _dict(codes, region_names)
    data["asn"] = pa.array(_concat(parts, lambda p: p.asn), pa.uint32())
    codes, orgs, _ = merged_dictionary(parts, lambda p: p.as_org_idx, lambda p: p.as_orgs)
    data["as_org"] = _dict(codes, orgs)
    data["fp_flags"] = pa.array(_concat(parts, lambda p: p.fp_flags), pa.uint16())
    data["fp_verdict"] = pa.array(_concat(parts, lambda p: p.fp_verdict), pa.uint16())
    data["geo_db_version"] = _const_column(parts, lambda p: p.geo_db_version)
    data["asn_db_version"] = _const_column(parts, lambda p: p.asn_db_version)
    data["source_topic"] = _const_column(parts, lambda p: p.source_topic)
    data["source_partition"] = pa.array(
        _concat(parts, lambda p: np.full(len(p), p.source_partition, np.uint32)), pa.uint32()
    )
    data["source_offset"] = pa.array(
        _concat(parts, lambda p: np.full(len(p), p.source_offset, np.uint64)), pa.uint64()
    )
    return pa.table(data)
