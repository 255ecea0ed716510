"""The wire format's promise: a client that knows only ``schemas/*.avsc`` reads our topics.

Every message kind (each name in ``schemas.names.RECORD_NAMES``), framed by our Codec, is
decoded by a second Avro implementation, the Apache Avro project's own ``avro`` package, from
the ``.avsc`` files parsed as one set (a file may name a record another one defines). Its
records must equal fastavro's field by field, and the facts a client needs (README,
"Messages") are checked here: the single-object header, the fingerprints, packet timestamps in
nanoseconds, packed columns little-endian by their ``dtype`` attribute, keys as UTF-8.
"""

from __future__ import annotations

import io
import ipaddress
import json
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import avro.errors
import avro.io
import avro.name
import avro.schema
import numpy as np
import pytest
from fastavro.schema import to_parsing_canonical_form

from schemas.batch import PacketBatch
from schemas.codec import HEADER_LEN, MAGIC, Codec, column_dtypes_of, dead_letter, pack_columns
from schemas.names import (
    ALERT,
    DEAD_LETTER,
    ENRICHED_BATCH,
    PACKET_BATCH,
    PACKET_EVENT,
    PARTIAL_COUNTS,
    RECORD_NAMES,
    SCAN_EVENT,
    SENSOR_HEALTH,
    WINDOW_COUNTS,
)
from schemas.partials import Partial, PartialFrame, encode_frame
from schemas.registry import SCHEMA_DIR, default_schemas
from schemas.windowcounts import encode_window_counts
from schemas.windowrows import WindowRows

CODEC = Codec()
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
COMPLEX = {"record", "error", "enum", "fixed", "array", "map"}
# 2022-04-01T12:34:56.123456789Z: nanoseconds no millisecond or microsecond clock could give.
TS_NS = 1_648_816_496_123_456_789
T0 = datetime(2022, 4, 1, 12, 0, tzinfo=UTC)
# struct codes of the packed column dtypes (struct's own, so numpy does not judge itself).
STRUCT_CODES = {("i", 8): "q", ("u", 1): "B", ("u", 2): "H", ("u", 4): "I", ("u", 8): "Q"}
# Topics whose messages have a key: the UTF-8 bytes of this string field of the record
# (producers/sensor.py, streams/app.py). The others are unkeyed.
KEY_FIELDS = {SENSOR_HEALTH: "sensor_id", WINDOW_COUNTS: "kind", ALERT: "key", SCAN_EVENT: "source"}


# -- the schemas, as a client outside darkscope reads them --------------------------------------


def _walk(node: Any, namespace: str, refs: set[str], defs: set[str]) -> None:
    """Collect the full names a schema node refers to and those it defines."""
    if isinstance(node, str):
        if node not in PRIMITIVES:
            refs.add(node if "." in node else f"{namespace}.{node}")
    elif isinstance(node, list):
        for n in node:
            _walk(n, namespace, refs, defs)
    elif isinstance(node, dict):
        kind, ns = node.get("type"), node.get("namespace", namespace)
        if kind in ("record", "error", "enum", "fixed"):
            name = node["name"]
            defs.add(name if "." in name else f"{ns}.{name}")
        if kind not in COMPLEX:
            _walk(kind, ns, refs, defs)
        for key in ("items", "values"):
            if key in node:
                _walk(node[key], ns, refs, defs)
        for f in node.get("fields", ()):
            _walk(f["type"], ns, refs, defs)


def avsc_in_dependency_order(directory: Path = SCHEMA_DIR) -> list[Path]:
    """The ``.avsc`` files ordered so that each comes after the files defining what it names."""
    needs: dict[Path, set[str]] = {}
    gives: dict[Path, set[str]] = {}
    for path in sorted(directory.glob("*.avsc")):
        schema = json.loads(path.read_text())
        refs: set[str] = set()
        defs: set[str] = set()
        _walk(schema, "", refs, defs)
        needs[path], gives[path] = refs - defs, defs
    order: list[Path] = []
    known: set[str] = set()
    while needs:
        ready = [p for p, refs in needs.items() if refs <= known]
        assert ready, f"unresolvable references: {needs}"
        for p in ready:
            order.append(p)
            known |= gives[p]
            del needs[p]
    return order


def parse_as_one_set() -> dict[str, avro.schema.RecordSchema]:
    """Every shipped schema parsed by Apache Avro with one shared set of names."""
    names = avro.name.Names()
    parsed = {}
    for path in avsc_in_dependency_order():
        schema = avro.schema.make_avsc_object(json.loads(path.read_text()), names)
        assert isinstance(schema, avro.schema.RecordSchema)
        parsed[schema.fullname] = schema
    return parsed


APACHE = parse_as_one_set()


def avro_decode(frame: bytes) -> tuple[str, dict[str, Any]]:
    """Decode a frame as a client would: header -> schema by fingerprint -> Avro binary body."""
    assert frame[:2] == MAGIC == b"\xc3\x01"
    name = BY_FINGERPRINT[frame[2:HEADER_LEN]]
    body = io.BytesIO(frame[HEADER_LEN:])
    record = avro.io.DatumReader(APACHE[name]).read(avro.io.BinaryDecoder(body))
    assert body.tell() == len(frame) - HEADER_LEN, "trailing bytes"
    assert isinstance(record, dict)
    return name, record


# -- fingerprints --------------------------------------------------------------------------------


def _spec_canonical(node: Any) -> Any:
    """Apache Avro 1.12.2 (Python) writes a primitive with a logicalType as {"type": "long"} in
    its canonical form; the specification ([PRIMITIVES]), Java and fastavro write "long"."""
    if isinstance(node, list):
        return [_spec_canonical(n) for n in node]
    if isinstance(node, dict):
        if set(node) == {"type"} and node["type"] in PRIMITIVES:
            return node["type"]
        return {k: _spec_canonical(v) for k, v in node.items()}
    return node


def spec_canonical_form(schema: avro.schema.Schema) -> str:
    """The Parsing Canonical Form of the specification, from Apache Avro's own."""
    return json.dumps(_spec_canonical(json.loads(schema.canonical_form)), separators=(",", ":"))


def fp_of(schema: avro.schema.Schema) -> bytes:
    """Apache Avro's CRC-64-AVRO of the specification's canonical form of ``schema``."""
    return avro.schema.parse(spec_canonical_form(schema)).fingerprint("CRC-64-AVRO")


BY_FINGERPRINT = {fp_of(schema): name for name, schema in APACHE.items()}


def _has_logical_type(node: Any) -> bool:
    if isinstance(node, list):
        return any(_has_logical_type(n) for n in node)
    if isinstance(node, dict):
        return "logicalType" in node or any(_has_logical_type(v) for v in node.values())
    return False


def test_enriched_batch_alone_does_not_parse_the_set_does() -> None:
    with pytest.raises(avro.errors.SchemaParseException, match=r"darkscope\.PacketBatch"):
        avro.schema.parse((SCHEMA_DIR / "enriched_batch.avsc").read_text())
    order = [p.name for p in avsc_in_dependency_order()]
    assert order.index("packet_batch.avsc") < order.index("enriched_batch.avsc")
    assert set(APACHE) == set(RECORD_NAMES) == set(default_schemas().schemas)


@pytest.mark.parametrize("name", RECORD_NAMES)
def test_apache_avro_fingerprint_is_the_frame_header(name: str) -> None:
    schema = APACHE[name]
    header = frames(name)[0][2:HEADER_LEN]
    assert spec_canonical_form(schema) == to_parsing_canonical_form(default_schemas()[name])
    assert fp_of(schema) == header == CODEC.fingerprint(name).to_bytes(8, "little")
    # Apache Avro's own Schema.fingerprint() agrees except where a timestamp-millis field makes
    # its canonical form differ (Alert, SensorHealth, DeadLetter): a client of that package
    # fingerprints those from the specification's canonical form, as fp_of does.
    with_logical = _has_logical_type(json.loads(str(schema)))
    assert (schema.fingerprint() == header) is not with_logical


# -- one frame of every kind, decoded by both implementations ------------------------------------


def v6(text: str) -> Any:
    """An IPv6 address as one element of a packet batch's ``src6`` / ``dst6`` column."""
    return np.frombuffer(ipaddress.IPv6Address(text).packed, dtype="V16")[0]


def packet_batch() -> PacketBatch:
    """Three packets, IPv4 and IPv6, every column non-zero somewhere and above 2^31 where
    its type allows."""
    b = PacketBatch.zeros("sensor-é1", 2**40 + 7, 3)
    c = b.columns
    c["ts"][:] = [TS_NS, TS_NS + 1, TS_NS + 10**9]
    c["ip_version"][:] = [4, 4, 6]
    c["src"][:2] = [0xC0000201, 0xCB007107]  # 192.0.2.1, 203.0.113.7
    c["dst"][:2] = [0xC6336401, 0xC63364FF]  # 198.51.100.1, .255
    c["src6"][2] = v6("2001:db8::81")
    c["dst6"][2] = v6("2001:db8:ffff::2")
    c["protocol"][:] = [6, 1, 58]
    c["sport"][:] = [54321, 0, 0]
    c["dport"][:] = [23, 0, 0]
    c["tcp_flags"][:] = [0x02, 0, 0]
    c["tcp_seq"][:] = [0xC6336401, 0, 0]
    c["tcp_ack"][:] = [0xFFFFFFFF, 0, 0]
    c["tcp_window"][:] = [65535, 0, 0]
    c["tcp_opt_len"][:] = [20, 0, 0]
    c["tcp_opt_kinds"][:] = [0x0204080103000000, 0, 0xFF00000000000000]
    c["tcp_mss"][:] = [1460, 0, 0]
    c["tcp_wscale"][:] = [7, 255, 255]
    c["ip_id"][:] = [54321, 1, 0]
    c["ttl"][:] = [64, 250, 255]
    c["ip_flags"][:] = [2, 0, 1]
    c["frag_offset"][:] = [0, 0, 8191]
    c["length"][:] = [60, 56, 1280]
    c["icmp_type"][:] = [0, 3, 128]
    c["icmp_code"][:] = [0, 3, 0]
    c["inner_protocol"][:] = [0, 17, 0]
    c["inner_src"][:] = [0, 0xC6336401, 0]
    c["inner_dst"][:] = [0, 0xC0000202, 0]
    c["inner_sport"][:] = [0, 40000, 0]
    c["inner_dport"][:] = [0, 53, 0]
    return b


def enriched_record(batch: PacketBatch) -> dict[str, Any]:
    """An EnrichedBatch record, laid out as streams.enrich.Enricher.record lays it out."""
    rec: dict[str, Any] = {
        "packets": CODEC.batch_record(batch),
        "source_topic": "darkscope.packets",
        "source_partition": 3,
        "source_offset": 2**33,
        "geo_db_version": "2026-11-01 GeoLite2-City",
        "asn_db_version": "",
        "regions": ["CI", "ZZ"],
        "region_names": ["Côte d'Ivoire", "Unknown"],
        "as_orgs": ["Réseau 東京"],
        "services": ["telnet", "unknown"],
    }
    columns = {
        "region_idx": [0, 1, 1],
        "asn": [2**32 - 1, 0, 64512],
        "as_org_idx": [0, 0, 0],
        "service_idx": [0, 1, 1],
        "fp_flags": [1, 0, 0x8000],
        "fp_verdict": [1, 0, 0],
    }
    rec.update(pack_columns(columns, column_dtypes_of(default_schemas()[ENRICHED_BATCH])))
    return rec


def alert() -> dict[str, Any]:
    """An Alert record, shaped as streams.alerts makes them."""
    return {
        "alert_id": "surge_packets/port/23/tcp/1m/2022-04-01T12:00:00Z",
        "kind": "surge_packets",
        "severity": "critical",
        "dimension": "port",
        "key": "23/tcp",
        "window_start": T0,
        "window_end": datetime(2022, 4, 1, 12, 1, tzinfo=UTC),
        "observed": 1.5e6,
        "baseline": 1234.25,
        "score": -0.0,
        "message": "Port 23/tcp: 1.5 M packets, 1,215x the median — Mirai?",
        "sensor_id": None,
        "evidence": {"threshold": "10", "top": "203.0.113.7"},
    }


def sensor_health() -> dict[str, Any]:
    """A SensorHealth record, shaped as producers.sensor makes them."""
    return {
        "sensor_id": "capteur-é1",
        "ts": datetime(2022, 4, 1, 12, 0, 5, 123000, tzinfo=UTC),
        "started": T0,
        "source": "iface:eth1",
        "packets_seen": 2**40,
        "packets_dropped_kernel": 3,
        "packets_malformed": {"truncated": 2, "bad_ip_header": 1},
        "packets_out_of_prefix": 0,
        "packets_sent": 2**40 - 3,
        "batches_sent": 99,
        "send_failed": 0,
        "monitored_addresses": 65536,
        "prefixes": ["198.51.100.0/24", "2001:db8::/48"],
        "version": "0.1.0",
    }


def frames(name: str) -> list[bytes]:
    """Frames of ``name`` made by darkscope's own encoders."""
    if name == PACKET_BATCH:
        ipv4_only = PacketBatch.zeros("s", 0, 2)
        ipv4_only.columns["ip_version"][:] = 4
        return [CODEC.encode_batch(packet_batch()), CODEC.encode_batch(ipv4_only)]
    if name == PACKET_EVENT:
        return CODEC.encode_events(packet_batch())
    if name == ENRICHED_BATCH:
        return [CODEC.encode(ENRICHED_BATCH, enriched_record(packet_batch()))]
    if name == ALERT:
        return [CODEC.encode(ALERT, alert()), CODEC.encode(ALERT, {**alert(), "sensor_id": "s1"})]
    if name == SENSOR_HEALTH:
        return [CODEC.encode(SENSOR_HEALTH, sensor_health())]
    if name == SCAN_EVENT:  # as sinks.scanpublish makes them
        return [
            CODEC.encode(
                SCAN_EVENT,
                {
                    "id": "2001:db8::7/58/1648814405123", "source": "2001:db8::7", "protocol": 58,
                    "start": datetime(2022, 4, 1, 12, 0, 5, 123000, tzinfo=UTC), "end": T0.replace(hour=13),
                    "packets": 2**33, "destinations": 70_000, "ports": 1, "fp_flags": 2**15,
                    "fp_verdict": 3, "sensors": ["capteur-é1", "s2"], "region": "JP", "asn": 2**32 - 1,
                    "idle": 600,
                },
            )
        ]  # fmt: skip
    if name == PARTIAL_COUNTS:
        u32 = np.array([0, 1], np.uint32)
        minute = np.array([1_648_814_400, 1_648_814_460], np.int64)
        partial = Partial(
            "port", ["23/tcp", "icmp"], minute, u32, np.array([5, 2**32 - 1], np.uint32),
            minute, u32, np.array([0xC0000201, 0xD1A533B3CEADDFD2], np.uint64),
        )  # fmt: skip
        return [
            encode_frame(CODEC, PartialFrame((partial,), 3, TS_NS, 2**33, 1, 4), "darkscope.packets"),
            encode_frame(CODEC, PartialFrame((), 3, -1, -1, 0, 4)),  # an idle marker
        ]
    if name == WINDOW_COUNTS:
        rows = WindowRows(
            "region", ["CI", "CN", "ZZ"], np.array([0, 1], np.uint8),
            np.array([1_648_814_400, 1_648_814_400], np.int64), np.array([0, 2], np.uint32),
            np.array([7, 2**40], np.int64), np.array([1, 2**33], np.int64),
        )  # fmt: skip
        return [encode_window_counts(CODEC, 1, 4, 1_648_814_460, rows, horizon=1_648_800_000)]
    if name == DEAD_LETTER:
        bad = MAGIC + b"\xff" * 8 + b"body"
        return [
            dead_letter(
                CODEC, "worker", "unknown_schema", "no such schema", ("darkscope.packets", 2, 41), bad, None
            ),
            dead_letter(
                CODEC, "sink", "undecodable", "é", ("darkscope.enriched", 0, 7), b"\x00", b"\xff\xfe"
            ),
        ]
    raise AssertionError(f"no sample frames of {name}: add them here")


def assert_same(a: Any, b: Any, where: str) -> None:
    """Two decoded values equal, of the same kind (str as str, bytes as bytes), recursively."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b) or (isinstance(a, datetime) and isinstance(b, datetime)), where
        assert a == b, where
        if isinstance(a, datetime):
            assert a.utcoffset() == b.utcoffset() == UTC.utcoffset(None), where


def test_every_record_name_has_frames() -> None:
    assert all(frames(name) for name in RECORD_NAMES)


@pytest.mark.parametrize("name", RECORD_NAMES)
def test_apache_avro_decodes_every_frame_as_fastavro_does(name: str) -> None:
    for frame in frames(name):
        decoded_name, record = avro_decode(frame)
        assert decoded_name == name
        assert_same(record, CODEC.decode(frame).record, name)


# -- the facts README gives other clients ----------------------------------------------------------


def dtype_fields(schema: avro.schema.Schema) -> Iterator[tuple[avro.schema.Field, str]]:
    """Every field, at any depth, that carries a ``dtype`` attribute, as Apache Avro reads it."""
    if isinstance(schema, avro.schema.RecordSchema):
        for f in schema.fields:
            if f.get_prop("dtype") is not None:
                yield f, str(f.get_prop("dtype"))
            yield from dtype_fields(f.type)
    elif isinstance(schema, avro.schema.ArraySchema):
        yield from dtype_fields(schema.items)
    elif isinstance(schema, avro.schema.UnionSchema):
        for s in schema.schemas:
            yield from dtype_fields(s)


def unpack(raw: bytes, dtype: str) -> list[Any]:
    """A packed column read with struct: little-endian numbers, or 16-byte addresses."""
    dt = np.dtype(dtype)
    if dt.kind == "V":
        return [raw[i : i + dt.itemsize] for i in range(0, len(raw), dt.itemsize)]
    code = STRUCT_CODES[(dt.kind, dt.itemsize)]
    return list(struct.unpack(f"<{len(raw) // dt.itemsize}{code}", raw))


@pytest.mark.parametrize("name", [n for n in RECORD_NAMES if list(dtype_fields(APACHE[n]))])
def test_packed_columns_are_avro_bytes_of_little_endian_values_of_their_dtype(name: str) -> None:
    for field, dtype in dtype_fields(APACHE[name]):
        assert field.type.type == "bytes", field.name
        dt = np.dtype(dtype)
        assert dt.kind == "V" or (dt.kind, dt.itemsize) in STRUCT_CODES, dtype
        if dt.kind != "V" and dt.itemsize > 1:
            assert dtype.startswith("<"), f"{field.name}: {dtype}"  # little-endian, said so
        else:  # single bytes, and raw 16-byte IPv6 addresses in network order
            assert dt.byteorder == "|", f"{field.name}: {dtype}"


def test_packet_columns_read_with_struct_are_the_packet_values() -> None:
    batch = packet_batch()
    for frame, packets in (
        (CODEC.encode_batch(batch), None),
        (CODEC.encode(ENRICHED_BATCH, enriched_record(batch)), "packets"),
    ):
        _, record = avro_decode(frame)
        rec = record[packets] if packets else record
        assert rec["count"] == len(batch)
        for field, dtype in dtype_fields(APACHE[PACKET_BATCH]):
            column = batch.columns[field.name]
            expected = [bytes(v) for v in column] if column.dtype.kind == "V" else column.tolist()
            assert unpack(rec[field.name], dtype) == expected, field.name
        assert unpack(rec["src"], "<u4")[0] == int(ipaddress.IPv4Address("192.0.2.1"))
        assert ipaddress.IPv6Address(unpack(rec["src6"], "V16")[2]) == ipaddress.IPv6Address("2001:db8::81")


def test_ipv4_only_batches_send_empty_ipv6_columns() -> None:
    _, record = avro_decode(frames(PACKET_BATCH)[1])
    assert record["count"] == 2 and record["src6"] == record["dst6"] == b""


def test_packet_timestamps_are_nanoseconds_since_the_epoch_utc() -> None:
    batch_ts = unpack(avro_decode(CODEC.encode_batch(packet_batch()))[1]["ts"], "<i8")
    event_ts = [avro_decode(f)[1]["ts"] for f in frames(PACKET_EVENT)]
    assert batch_ts == event_ts == [TS_NS, TS_NS + 1, TS_NS + 10**9]
    seconds, ns = divmod(event_ts[0], 10**9)
    assert datetime.fromtimestamp(seconds, tz=UTC) == datetime(2022, 4, 1, 12, 34, 56, tzinfo=UTC)
    assert ns == 123_456_789
    for name in (PACKET_BATCH, PACKET_EVENT):
        ts = next(f for f in APACHE[name].fields if f.name == "ts")
        assert "nanoseconds" in (ts.doc or ""), name


def test_other_timestamps_are_avro_timestamp_millis() -> None:
    for name, field in ((ALERT, "window_start"), (SENSOR_HEALTH, "ts"), (DEAD_LETTER, "ts")):
        f = next(f for f in APACHE[name].fields if f.name == field)
        assert f.type.get_prop("logicalType") == "timestamp-millis", name
    _, alert = avro_decode(frames(ALERT)[0])
    assert alert["window_start"] == T0


def test_keys_are_utf8_of_a_string_field_and_dead_letters_keep_the_original_key() -> None:
    for name, field in KEY_FIELDS.items():
        f = next(f for f in APACHE[name].fields if f.name == field)
        assert f.type.type == "string", name
        _, record = avro_decode(frames(name)[0])
        assert isinstance(record[field], str), name
    # The producer sends sensor_id.encode(): a client finds the record's string in the key.
    _, health = avro_decode(frames(SENSOR_HEALTH)[0])
    assert health["sensor_id"].encode("utf-8") == b"capteur-\xc3\xa91"
    _, letter = avro_decode(frames(DEAD_LETTER)[1])
    assert letter["key"] == b"\xff\xfe" and letter["payload"] == b"\x00"
    assert letter["source_topic"] == "darkscope.enriched" and letter["source_offset"] == 7
