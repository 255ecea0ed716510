"""Schema loading, canonical forms and fingerprints."""

from __future__ import annotations

import json

import pytest
from fastavro.schema import to_parsing_canonical_form

from schemas.batch import column_dtypes
from schemas.registry import SCHEMA_DIR, default_schemas, fingerprint

# The Avro project's cross-language test vectors (share/test/data/schema-tests.txt in
# apache/avro, checked there against Java's SchemaNormalization): schema, canonical form,
# fingerprint as Java's signed long.
SPEC_VECTORS = [
    ('"null"', '"null"', 7195948357588979594),
    ('{"type":"null"}', '"null"', 7195948357588979594),
    ('"int"', '"int"', 8247732601305521295),
    ('"long"', '"long"', -3434872931120570953),
    ('"string"', '"string"', -8142146995180207161),
    ('["int", {"type":"boolean"}]', '["int","boolean"]', 5392556393470105090),
    (
        '{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}',
        '{"name":"x.y.foo","type":"record","fields":[]}',
        5916914534497305771,
    ),
    ('{"items":{"type":"null"}, "type":"array"}', '{"type":"array","items":"null"}', -589620603366471059),
    ('{"values":"string", "type":"map"}', '{"type":"map","values":"string"}', -8732877298790414990),
    (
        '{"name":"PigValue","type":"record",'
        ' "fields":[{"name":"value", "type":["null", "int", "long", "PigValue"]}]}',
        '{"name":"PigValue","type":"record","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}',
        -1759257747318642341,
    ),
]

# Fingerprints (frame header bytes 2..10, hex) of the shipped schemas, as the hand-written
# CRC-64-AVRO gave them before fastavro's replaced it. Messages already on the topics carry
# these: a schema edit changes its value here, deliberately (register the old version with the
# Codec so those messages stay readable). Version 2 (issue 18: IPv6 quotes, 32-bit lengths,
# truncation) changed PacketBatch, PacketEvent, EnrichedBatch and SensorHealth; version 1 is
# V1_SHIPPED, registered by every Codec from schemas/v1/.
V1_SHIPPED = {
    "darkscope.EnrichedBatch": "c222280d25f84710",
    "darkscope.PacketBatch": "d98e32545cc04f60",
    "darkscope.PacketEvent": "cfaad8439db9c0fa",
    "darkscope.SensorHealth": "489dbf6b637d6da6",
}
SHIPPED = {
    "darkscope.Alert": "8acf1ae1e1fa7628",
    "darkscope.DeadLetter": "796ce163c3910066",
    "darkscope.EnrichedBatch": "1d3c1f8ca4d67564",
    "darkscope.PacketBatch": "bc790b0008729ada",
    "darkscope.PacketEvent": "1a0ab22ee451d527",
    "darkscope.PartialCounts": "a4fd1122c45876ae",
    "darkscope.ScanEvent": "5bf0b359be7e50ca",
    "darkscope.SensorHealth": "1e1b67fc7ec7e9bc",
    "darkscope.WindowCounts": "d89d82ab95a9bbdb",
}


@pytest.mark.parametrize(("schema", "canonical", "java_long"), SPEC_VECTORS)
def test_fingerprint_matches_the_avro_project_test_vectors(
    schema: str, canonical: str, java_long: int
) -> None:
    parsed = json.loads(schema)
    assert to_parsing_canonical_form(parsed) == canonical
    assert fingerprint(parsed) == java_long % 2**64


def test_single_object_header_of_int_is_the_specification_example() -> None:
    # Avro specification, single-object encoding: "int" has fingerprint 8f5c393f1ad57572 (LE).
    assert fingerprint("int").to_bytes(8, "little").hex() == "8f5c393f1ad57572"


def test_shipped_schemas_keep_their_fingerprints_and_they_are_distinct() -> None:
    schemas = default_schemas()
    assert {n: fp.to_bytes(8, "little").hex() for n, fp in schemas.fingerprints.items()} == SHIPPED
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


def test_version_one_schemas_keep_the_fingerprints_their_messages_carry() -> None:
    from schemas.versions import previous_schemas

    old = {
        f"{s['namespace']}.{s['name']}": fingerprint(s).to_bytes(8, "little").hex()
        for s in previous_schemas()
    }
    assert old == V1_SHIPPED
