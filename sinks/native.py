"""Enriched batches -> one ClickHouse ``Native`` block of the ``packets`` table, from NumPy.

Why Native and not Arrow: ClickHouse reads a Native block by copying each column's bytes,
while its Arrow reader (``FORMAT Arrow``, what ``insert_arrow`` sends) converts column by
column. Measured on this 43-column table, 200k-row inserts into ``ENGINE = Null``: Arrow
1.0-1.2M rows/s, Native 1.7-4M rows/s; into the whole schema see ``bench/sink.py``. The
insert is the same clickhouse-connect call (``raw_insert(..., fmt="Native")``) for chDB and
for a ClickHouse server.

The block, as ClickHouse's Native input format reads it (and clickhouse-connect writes it):
LEB128 column count, LEB128 row count, then per column its name and type (LEB128-length
strings) and its values:

- fixed-width numbers, ``DateTime64`` (Int64 ns) and ``IPv4`` (UInt32): little-endian values;
- ``IPv6``: 16 bytes per value in network order (the batch's ``V16`` columns as they are);
- ``Date``: UInt16 days since 1970-01-01;
- ``LowCardinality(String)``: UInt64 serialization version 1 (shared dictionaries with
  additional keys), UInt64 flags (index width, has additional keys, new dictionary), UInt64
  key count, the keys as Strings, UInt64 row count, then one index per row.

``length`` is the batch's ``total_length`` (32-bit; the batch's ``length`` is PacketBatch
version 1's clipped copy). The columns with a DEFAULT (``day``, ``source``, ``victim``, see
:mod:`sinks.schema`) are
computed here with NumPy, to the same values, while the sink's insert thread is busy with the
group before: measured, the engine then spends about 4% less time per insert (the block is
22 bytes a row larger). The DEFAULTs stay in the schema for other writers (``derived=False``
leaves them to ClickHouse).

The rows are not pre-sorted by the table's ORDER BY key: ClickHouse skips its sort for a
sorted block (about 7% less engine time per insert), but the NumPy permutation of every
column costs the sink's other thread about as much, and on a 2-core machine the sink gained
nothing measurable (``bench/sink.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.fingerprints import Fingerprint
from sinks.arrow import EnrichedColumns, merged_dictionary
from sinks.schema import ICMP6_ERRORS, ICMP_ERRORS

__all__ = ["DERIVED_COLUMNS", "NATIVE_COLUMNS", "RENAMED", "derived_columns", "native_block"]

Array = npt.NDArray[Any]
Chunk = bytes | memoryview

_LC_VERSION = 1  # SharedDictionariesWithAdditionalKeys
_LC_HAS_ADDITIONAL_KEYS = 1 << 9
_LC_NEED_UPDATE_DICTIONARY = 1 << 10

# Packet columns stored as they are: name -> (ClickHouse type, little-endian dtype).
_PACKET: dict[str, tuple[str, str]] = {
    "src": ("IPv4", "<u4"),
    "dst": ("IPv4", "<u4"),
    "inner_src": ("IPv4", "<u4"),
    "inner_dst": ("IPv4", "<u4"),
    "ip_version": ("UInt8", "u1"),
    "protocol": ("UInt8", "u1"),
    "sport": ("UInt16", "<u2"),
    "dport": ("UInt16", "<u2"),
    "tcp_flags": ("UInt8", "u1"),
    "tcp_seq": ("UInt32", "<u4"),
    "tcp_ack": ("UInt32", "<u4"),
    "tcp_window": ("UInt16", "<u2"),
    "tcp_opt_len": ("UInt8", "u1"),
    "tcp_opt_kinds": ("UInt64", "<u8"),
    "tcp_mss": ("UInt16", "<u2"),
    "tcp_wscale": ("UInt8", "u1"),
    "ip_id": ("UInt16", "<u2"),
    "ttl": ("UInt8", "u1"),
    "ip_flags": ("UInt8", "u1"),
    "frag_offset": ("UInt16", "<u2"),
    "ip_reserved": ("UInt8", "u1"),
    "caplen": ("UInt32", "<u4"),
    "truncated": ("UInt8", "u1"),
    "icmp_type": ("UInt8", "u1"),
    "icmp_code": ("UInt8", "u1"),
    "inner_protocol": ("UInt8", "u1"),
    "inner_sport": ("UInt16", "<u2"),
    "inner_dport": ("UInt16", "<u2"),
}
_LC = "LowCardinality(String)"
_DAY_NS = 86_400 * 10**9
_BACKSCATTER = int(Fingerprint.BACKSCATTER)
_ICMP_ERROR_TYPES = np.array(ICMP_ERRORS, np.uint8)
_ICMP6_ERROR_TYPES = np.array(ICMP6_ERRORS, np.uint8)
# toIPv6 of an IPv4 address: ::ffff:a.b.c.d
_MAPPED_PREFIX = np.array([0] * 10 + [0xFF, 0xFF], np.uint8)

# Columns whose batch column has another name: the 32-bit length (``length`` is version 1's).
RENAMED: dict[str, tuple[str, str, str]] = {"length": ("total_length", "UInt32", "<u4")}
_IPV6_COLUMNS = ("src6", "dst6", "inner_src6", "inner_dst6")

# The block's columns in order, with their ClickHouse types.
NATIVE_COLUMNS: list[tuple[str, str]] = [
    ("ts", "DateTime64(9, 'UTC')"),
    ("sensor", _LC),
    ("batch_seq", "UInt64"),
    *((name, "IPv6") for name in _IPV6_COLUMNS),
    *((name, typ) for name, (typ, _) in _PACKET.items()),
    *((name, typ) for name, (_, typ, _) in RENAMED.items()),
    ("service", _LC),
    ("region", _LC),
    ("region_name", _LC),
    ("asn", "UInt32"),
    ("as_org", _LC),
    ("fp_flags", "UInt16"),
    ("fp_verdict", "UInt16"),
    ("geo_db_version", _LC),
    ("asn_db_version", _LC),
    ("source_topic", _LC),
    ("source_partition", "UInt32"),
    ("source_offset", "UInt64"),
]
# The columns the schema fills with a DEFAULT expression, computed here unless told not to.
DERIVED_COLUMNS: list[tuple[str, str]] = [("day", "Date"), ("source", "IPv6"), ("victim", "IPv6")]


def _leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _string(text: str) -> bytes:
    raw = text.encode()
    return _leb128(len(raw)) + raw


def _raw(values: Array) -> memoryview:
    """The array's bytes, without a copy when it is contiguous."""
    return np.ascontiguousarray(values).view(np.uint8).data


def _fixed(values: Array, dtype: str) -> memoryview:
    return _raw(values.astype(dtype, copy=False))


def _column(
    parts: Sequence[EnrichedColumns], get: Callable[[EnrichedColumns], Array], dtype: str
) -> list[Chunk]:
    """One column of several batches as the batches' own buffers (joined once, into the block)."""
    return [_fixed(get(p), dtype) for p in parts]


def _low_cardinality(keys: Sequence[str], codes: Array) -> list[Chunk]:
    """A LowCardinality(String) column: ``keys`` and each row's index into them."""
    keys = list(keys) or [""]
    width, dtype = (0, "u1") if len(keys) <= 0xFF else (1, "<u2") if len(keys) <= 0xFFFF else (2, "<u4")
    flags = _LC_HAS_ADDITIONAL_KEYS | _LC_NEED_UPDATE_DICTIONARY | width
    head = np.array([_LC_VERSION, flags, len(keys)], "<u8").tobytes()
    return [
        head,
        b"".join(_string(k) for k in keys),
        np.array([len(codes)], "<u8").tobytes(),
        _fixed(codes, dtype),
    ]


def _per_part(
    parts: Sequence[EnrichedColumns], value_of: Callable[[EnrichedColumns], Any], dtype: str
) -> Array:
    """A value constant within each batch, repeated over its rows."""
    return np.repeat(np.array([value_of(p) for p in parts], dtype), [len(p) for p in parts])


def _const_strings(
    parts: Sequence[EnrichedColumns], value_of: Callable[[EnrichedColumns], str]
) -> list[Chunk]:
    values = [value_of(p) for p in parts]
    keys = sorted(set(values))
    codes = np.repeat(np.array([keys.index(v) for v in values], np.uint32), [len(p) for p in parts])
    return _low_cardinality(keys, codes)


def derived_columns(p: EnrichedColumns) -> dict[str, Array]:
    """``day``, ``source`` and ``victim`` of a batch, as the DEFAULTs of ``packets`` compute them.

    ``day`` = toDate(ts) (days since the epoch, wrapping to UInt16 as ClickHouse does);
    ``source`` = src6 for IPv6 packets, else ``::ffff:src``, 16 bytes in network order;
    ``victim`` = ``::ffff:0.0.0.0`` unless backscatter, then the quote's destination for an
    ICMP / ICMPv6 error quoting a datagram (inner_dst mapped, or inner_dst6), else the source
    (as ``source``).
    """
    b = p.batch
    n = len(b)
    day = np.floor_divide(b["ts"], _DAY_NS).astype("<u2")
    source = np.empty((n, 16), np.uint8)
    source[:, :12] = _MAPPED_PREFIX
    source[:, 12:] = b["src"].astype(">u4").view(np.uint8).reshape(n, 4)
    v6 = b["ip_version"] == 6
    if v6.any():
        source[v6] = np.ascontiguousarray(b["src6"][v6]).view(np.uint8).reshape(-1, 16)
    inner = b["inner_protocol"] != 0
    quoted4 = ~v6 & (b["protocol"] == 1) & np.isin(b["icmp_type"], _ICMP_ERROR_TYPES) & inner
    victim = source.copy()
    victim[quoted4, 12:] = b["inner_dst"][quoted4].astype(">u4").view(np.uint8).reshape(-1, 4)
    quoted6 = v6 & (b["protocol"] == 58) & np.isin(b["icmp_type"], _ICMP6_ERROR_TYPES) & inner
    if quoted6.any():
        victim[quoted6] = np.ascontiguousarray(b["inner_dst6"][quoted6]).view(np.uint8).reshape(-1, 16)
    none = (np.asarray(p.fp_flags) & _BACKSCATTER) == 0
    victim[none, :12] = _MAPPED_PREFIX
    victim[none, 12:] = 0
    return {"day": day, "source": source.view("V16").reshape(n), "victim": victim.view("V16").reshape(n)}


def native_block(parts: Sequence[EnrichedColumns], derived: bool = True) -> tuple[list[str], bytes]:
    """The ``packets`` rows of one or more enriched batches: (column names, Native block).

    With ``derived`` the block carries ``day``, ``source`` and ``victim`` (see
    :func:`derived_columns`); without, ClickHouse computes them from their DEFAULTs.
    """
    n = sum(len(p) for p in parts)
    data: dict[str, list[Chunk]] = {}
    data["ts"] = _column(parts, lambda p: p.batch["ts"], "<i8")
    data["sensor"] = _const_strings(parts, lambda p: p.batch.sensor_id)
    data["batch_seq"] = [_fixed(_per_part(parts, lambda p: p.batch.batch_seq, "<u8"), "<u8")]
    for name in _IPV6_COLUMNS:
        data[name] = [_raw(p.batch[name]) for p in parts]
    for name, (_, dtype) in _PACKET.items():
        data[name] = [_fixed(p.batch[name], dtype) for p in parts]
    for name, (column, _, dtype) in RENAMED.items():
        data[name] = [_fixed(p.batch[column], dtype) for p in parts]
    codes, services, _ = merged_dictionary(parts, lambda p: p.service_idx, lambda p: p.services)
    data["service"] = _low_cardinality(services, codes)
    codes, regions, region_names = merged_dictionary(
        parts, lambda p: p.region_idx, lambda p: p.regions, lambda p: p.region_names
    )
    data["region"] = _low_cardinality(regions, codes)
    data["region_name"] = _low_cardinality(region_names, codes)
    data["asn"] = _column(parts, lambda p: p.asn, "<u4")
    codes, orgs, _ = merged_dictionary(parts, lambda p: p.as_org_idx, lambda p: p.as_orgs)
    data["as_org"] = _low_cardinality(orgs, codes)
    data["fp_flags"] = _column(parts, lambda p: p.fp_flags, "<u2")
    data["fp_verdict"] = _column(parts, lambda p: p.fp_verdict, "<u2")
    data["geo_db_version"] = _const_strings(parts, lambda p: p.geo_db_version)
    data["asn_db_version"] = _const_strings(parts, lambda p: p.asn_db_version)
    data["source_topic"] = _const_strings(parts, lambda p: p.source_topic)
    data["source_partition"] = [_fixed(_per_part(parts, lambda p: p.source_partition, "<u4"), "<u4")]
    data["source_offset"] = [_fixed(_per_part(parts, lambda p: p.source_offset, "<u8"), "<u8")]
    columns = list(NATIVE_COLUMNS)
    if derived:
        columns += DERIVED_COLUMNS
        computed = [derived_columns(p) for p in parts]
        for name, _ in DERIVED_COLUMNS:
            data[name] = [_raw(c[name]) for c in computed]
    chunks: list[Chunk] = [_leb128(len(columns)), _leb128(n)]
    for name, typ in columns:
        chunks += [_string(name), _string(typ), *data[name]]
    return [name for name, _ in columns], b"".join(chunks)
