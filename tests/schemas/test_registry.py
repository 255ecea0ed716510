"""Schema loading, canonical forms and fingerprints."""

from __future__ import annotations

import json

from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from schemas.batch import column_dtypes
from schemas.registry import SCHEMA_DIR, crc64_avro, default_schemas


def test_crc64_avro_matches_the_specification_example() -> None:
    # Avro specification, single-object encoding: "int" has fingerprint 8f5c393f1ad57572 (LE).
    assert crc64_avro(b'"int"').to_bytes(8, "little").hex() == "8f5c393f1ad57572"


def test_fingerprints_agree_with_fastavro_and_are_distinct() -> None:
    schemas = default_schemas()
    for name in schemas:
        canonical = to_parsing_canonical_form(schemas[name])
        expected = fastavro_fingerprint(canonical, "CRC-64-AVRO")
        assert schemas.fingerprints[name].to_bytes(8, "little").hex() == expected
    assert len(set(schemas.fingerprints.values())) == len(schemas.fingerprints)


def test_every_schema_file_is_loaded_under_its_full_name() -> None:
    names = {
        f"{s['namespace']}.{s['name']}"
        for s in (json.loads(p.read_text()) for p in SCHEMA_DIR.glob("*.avsc"))
    }
    assert names == set(default_schemas().schemas)
    assert {
        "darkscope.PacketBatch",
        "darkscope.PacketEvent",
        "darkscope.EnrichedBatch",
        "darkscope.Alert",
        "darkscope.SensorHealth",
        "darkscope.DeadLetter",
    } <= names


def test_enriched_batch_inlines_the_packet_batch_definition() -> None:
    canonical = to_parsing_canonical_form(default_schemas()["darkscope.EnrichedBatch"])
    assert '"name":"darkscope.PacketBatch","type":"record"' in canonical


def test_packet_event_has_a_field_for_every_batch_column() -> None:
    event_fields = {f["name"] for f in default_schemas()["darkscope.PacketEvent"]["fields"]}
    for column in column_dtypes():
        if column in ("src", "dst", "src6", "dst6"):
            continue  # events carry addresses as src_addr/dst_addr bytes
        assert column in event_fields
    assert {"src_addr", "dst_addr", "sensor_id"} <= event_fields


def test_every_batch_column_declares_a_little_endian_dtype_and_a_doc() -> None:
    for field in default_schemas()["darkscope.PacketBatch"]["fields"]:
        if field["type"] != "bytes":
            continue
        assert field.get("doc"), field["name"]
        dtype = column_dtypes()[field["name"]]
        assert dtype.byteorder in ("<", "|", "="), field["name"]
