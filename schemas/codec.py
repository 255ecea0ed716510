"""Avro single-object encoding for every darkscope message, built only from ``schemas/*.avsc``.

A frame is ``C3 01`` + the writer schema's CRC-64-AVRO fingerprint (8 bytes, little-endian) +
the Avro binary body (Avro specification, "Single-object encoding"). The fingerprint tells a
reader which schema wrote the body; the codec resolves it to the reader's version of the same
record by Avro's rules, so writers and readers can evolve independently. An unknown
fingerprint raises :class:`UnknownSchema`; bytes that are not a frame, or a body that does not
decode, raise :class:`UndecodableMessage`.

Packet batches are columnar: each column is one ``bytes`` field of packed little-endian
values, so decoding a batch is one fastavro call plus ``np.frombuffer`` per column.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from core.errors import SchemaMismatch, UndecodableMessage, UnknownSchema
from schemas.batch import ADDRESS6_COLUMNS, PacketBatch, batch_from_events, column_dtypes
from schemas.names import DEAD_LETTER, PACKET_BATCH, PACKET_EVENT
from schemas.registry import SchemaSet, default_schemas, fingerprint, full_name
from schemas.versions import ADDED_IN_V2, fill_v1_columns, previous_schemas

__all__ = [
    "MAGIC",
    "PACKET_BATCH",
    "PACKET_EVENT",
    "Codec",
    "Message",
    "column_dtypes_of",
    "dead_letter",
    "pack_columns",
    "read_fingerprint",
    "unpack_columns",
]

MAGIC = b"\xc3\x01"
HEADER_LEN = 10


@dataclass(frozen=True)
class Message:
    """A decoded frame: which record it is, which schema wrote it, and the record."""

    name: str
    fingerprint: int
    record: dict[str, Any]


def read_fingerprint(data: bytes) -> int:
    """The writer fingerprint of a single-object frame, or UndecodableMessage."""
    if len(data) < HEADER_LEN or data[:2] != MAGIC:
        raise UndecodableMessage(
            f"not an Avro single-object frame ({len(data)} bytes, starts {bytes(data[:2]).hex() or '-'})"
        )
    return int.from_bytes(data[2:HEADER_LEN], "little")


class Codec:
    """Encodes and decodes darkscope messages; one per process is enough (it is stateless)."""

    def __init__(self, schemas: SchemaSet | None = None, writers: Iterable[Mapping[str, Any]] = ()) -> None:
        """Readers are ``schemas`` (default: the shipped ones); ``writers`` adds other versions."""
        self._schemas = schemas or default_schemas()
        self._readers: dict[str, Any] = {}
        self._own_fp: dict[str, int] = {}
        self._writers: dict[int, tuple[str, Any]] = {}
        for name in self._schemas:
            parsed = parse_schema(self._schemas[name], _write_hint=False, named_schemas={})
            self._readers[name] = parsed
            fp = self._schemas.fingerprints[name]
            self._own_fp[name] = fp
            self._writers[fp] = (name, parsed)
        # Earlier versions stay readable (messages already on the topics); ours take precedence.
        for earlier in previous_schemas():
            if fingerprint(earlier) not in self._writers:
                self.register(earlier)
        for schema in writers:
            self.register(schema)
        self._headers = {name: MAGIC + fp.to_bytes(8, "little") for name, fp in self._own_fp.items()}
        self._dtypes = column_dtypes()

    def register(self, schema: Mapping[str, Any]) -> int:
        """Make another version of a record readable (as writer schema); returns its fingerprint."""
        fp = fingerprint(schema)
        self._writers[fp] = (full_name(schema), parse_schema(dict(schema), named_schemas={}))
        return fp

    def fingerprint(self, name: str) -> int:
        """Fingerprint of this codec's (reader and writer) version of ``name``."""
        return self._own_fp[name]

    # -- generic records -------------------------------------------------------------------

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        """Frame ``record`` as the named schema (SchemaMismatch when it does not fit)."""
        try:
            schema = self._readers[name]
        except KeyError:
            raise SchemaMismatch(f"no schema named {name}") from None
        buf = io.BytesIO()
        buf.write(self._headers[name])
        try:
            schemaless_writer(buf, schema, record)
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
            raise SchemaMismatch(f"{name}: {exc!r}") from exc
        return buf.getvalue()

    def decode(self, data: bytes) -> Message:
        """Decode a frame into the reader's version of its record."""
        fp = read_fingerprint(data)
        try:
            name, writer = self._writers[fp]
        except KeyError:
            raise UnknownSchema(fp) from None
        reader = self._readers.get(name)
        body = io.BytesIO(memoryview(data)[HEADER_LEN:])
        try:
            if reader is None or fp == self._own_fp.get(name):
                record = schemaless_reader(body, writer, None)
            else:
                record = schemaless_reader(body, writer, reader)
        except Exception as exc:
            raise UndecodableMessage(f"{name} body does not decode: {exc!r}") from exc
        if body.tell() != len(data) - HEADER_LEN:
            raise UndecodableMessage(f"{name} body has {len(data) - HEADER_LEN - body.tell()} trailing bytes")
        if not isinstance(record, dict):
            raise UndecodableMessage(f"{name} body is not a record")
        return Message(name, fp, record)

    # -- packet batches --------------------------------------------------------------------

    def batch_record(self, batch: PacketBatch) -> dict[str, Any]:
        """The PacketBatch Avro record of a batch (columns packed as little-endian bytes)."""
        has_v6 = bool((batch.columns["ip_version"] == 6).any())
        rec: dict[str, Any] = {
            "sensor_id": batch.sensor_id,
            "batch_seq": batch.batch_seq,
            "count": len(batch),
        }
        for name in self._dtypes:
            if name in ADDRESS6_COLUMNS and not has_v6:
                rec[name] = b""
            else:
                rec[name] = batch.columns[name].tobytes()
        return rec

    def encode_batch(self, batch: PacketBatch) -> bytes:
        """Frame a packet batch as a PacketBatch record."""
        return self.encode(PACKET_BATCH, self.batch_record(batch))

    def batch_from_record(self, rec: Mapping[str, Any]) -> PacketBatch:
        """Columns of a decoded PacketBatch record as NumPy arrays (zero-copy, read-only)."""
        n = int(rec["count"])
        if n < 0:
            raise UndecodableMessage(f"negative packet count {n}")
        cols = {}
        missing: set[str] = set()
        for name, dt in self._dtypes.items():
            raw = rec.get(name)
            if raw is None and name in ADDED_IN_V2:
                raw = b""  # a reader that resolved without the field's default
            if raw is None:
                raise UndecodableMessage(f"PacketBatch without column {name}")
            if not raw and n and name in ADDED_IN_V2:
                missing.add(name)  # a version-1 writer: filled below
                continue
            if not raw and name in ADDRESS6_COLUMNS:
                cols[name] = np.zeros(n, dtype=dt)
                continue
            if len(raw) != n * dt.itemsize:
                raise UndecodableMessage(
                    f"column {name} holds {len(raw)} bytes, {n} packets of {dt} need {n * dt.itemsize}"
                )
            cols[name] = np.frombuffer(raw, dtype=dt)
        if missing:
            fill_v1_columns(cols, n, missing, self._dtypes)
        return PacketBatch(str(rec["sensor_id"]), int(rec["batch_seq"]), cols)

    def decode_packets(self, data: bytes) -> PacketBatch:
        """Decode a PacketBatch frame, or a PacketEvent frame as a one-packet batch."""
        msg = self.decode(data)
        return self.packets_from_message(msg)

    def packets_from_message(self, msg: Message) -> PacketBatch:
        """The packets of a decoded PacketBatch or PacketEvent message."""
        if msg.name == PACKET_BATCH:
            return self.batch_from_record(msg.record)
        if msg.name == PACKET_EVENT:
            try:
                return batch_from_events([msg.record])
            except SchemaMismatch as exc:
                raise UndecodableMessage(str(exc)) from exc
        raise UndecodableMessage(f"{msg.name} is not a packet message")

    def encode_events(self, batch: PacketBatch) -> list[bytes]:
        """One PacketEvent frame per packet (the interoperable, slow form)."""
        return [self.encode(PACKET_EVENT, row) for row in batch.rows()]


def column_dtypes_of(schema: Mapping[str, Any]) -> dict[str, np.dtype[Any]]:
    """Top-level fields of a record schema that carry packed columns, with their dtypes."""
    return {f["name"]: np.dtype(f["dtype"]) for f in schema["fields"] if "dtype" in f}


def pack_columns(columns: Mapping[str, Any], dtypes: Mapping[str, np.dtype[Any]]) -> dict[str, bytes]:
    """Columns as the little-endian bytes of their schema dtype (cast when needed)."""
    out = {}
    for name, dt in dtypes.items():
        arr = np.asarray(columns[name])
        out[name] = (arr if arr.dtype == dt else arr.astype(dt)).tobytes()
    return out


def unpack_columns(
    record: Mapping[str, Any], dtypes: Mapping[str, np.dtype[Any]], rows: int | None = None
) -> dict[str, Any]:
    """Packed columns of a decoded record as NumPy arrays; all must hold the same row count."""
    out: dict[str, Any] = {}
    for name, dt in dtypes.items():
        raw = record.get(name)
        if not isinstance(raw, bytes) or len(raw) % dt.itemsize:
            raise UndecodableMessage(f"column {name} is not a whole number of {dt} values")
        out[name] = np.frombuffer(raw, dtype=dt)
        if rows is not None and len(out[name]) != rows:
            raise UndecodableMessage(f"column {name} has {len(out[name])} rows, expected {rows}")
    return out


def dead_letter(
    codec: Codec,
    stage: str,
    reason: str,
    error: str,
    where: tuple[str, int, int],
    payload: bytes,
    key: bytes | None,
) -> bytes:
    """A DeadLetter frame: why a message was rejected, by which stage, where it was
    (topic, partition, offset), and the message itself with its writer fingerprint if any."""
    try:
        fp: int | None = read_fingerprint(payload)
    except UndecodableMessage:
        fp = None
    if fp is not None and fp >= 2**63:
        fp -= 2**64  # Avro long is signed
    topic, partition, offset = where
    return codec.encode(
        DEAD_LETTER,
        {
            "reason": reason,
            "error": error[:2000],
            "source_topic": topic,
            "source_partition": partition,
            "source_offset": offset,
            "stage": stage,
            "ts": datetime.now(tz=UTC),
            "schema_fingerprint": fp,
            "key": key,
            "payload": payload,
        },
    )
