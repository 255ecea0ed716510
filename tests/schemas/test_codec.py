"""The codec: single-object framing, columnar batches, events, evolution and bad bytes."""

from __future__ import annotations

import copy
import os
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import CodecError, SchemaMismatch, UndecodableMessage, UnknownSchema
from schemas.batch import PacketBatch, column_dtypes
from schemas.codec import MAGIC, PACKET_BATCH, PACKET_EVENT, Codec, read_fingerprint
from schemas.registry import SchemaSet, default_schemas, fingerprint
from tests.strategies import packet_batches

CODEC = Codec()


def assert_same_batch(a: PacketBatch, b: PacketBatch) -> None:
    assert (a.sensor_id, a.batch_seq, len(a)) == (b.sensor_id, b.batch_seq, len(b))
    for name in column_dtypes():
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@given(packet_batches())
@settings(max_examples=150, deadline=None)
def test_batch_round_trip_is_exact(batch: PacketBatch) -> None:
    data = CODEC.encode_batch(batch)
    assert data[:2] == MAGIC
    assert read_fingerprint(data) == CODEC.fingerprint(PACKET_BATCH)
    assert_same_batch(CODEC.decode_packets(data), batch)


@given(packet_batches(max_rows=8))
@settings(max_examples=80, deadline=None)
def test_events_round_trip_to_the_same_rows(batch: PacketBatch) -> None:
    frames = CODEC.encode_events(batch)
    assert len(frames) == len(batch)
    for i, frame in enumerate(frames):
        one = CODEC.decode_packets(frame)
        assert len(one) == 1 and one.sensor_id == batch.sensor_id
        for name in column_dtypes():
            assert one[name][0] == batch[name][i], name


def test_ipv4_only_batch_sends_empty_ipv6_columns() -> None:
    batch = PacketBatch.zeros("s", 0, 100)
    batch.columns["ip_version"][:] = 4
    record = CODEC.batch_record(batch)
    assert record["src6"] == b"" and record["dst6"] == b""
    assert len(CODEC.decode_packets(CODEC.encode_batch(batch))["src6"]) == 100


@given(st.binary(max_size=200))
@settings(max_examples=1000, deadline=None)
def test_random_bytes_give_the_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        CODEC.decode(data)


def test_thousand_random_byte_strings_never_crash() -> None:
    rng = np.random.default_rng(1)
    for _ in range(1000):
        data = rng.bytes(int(rng.integers(0, 400)))
        with pytest.raises(CodecError):
            CODEC.decode_packets(data)


@pytest.mark.parametrize("name", sorted(default_schemas().schemas))
def test_random_body_behind_a_known_fingerprint_is_undecodable(name: str) -> None:
    header = MAGIC + CODEC.fingerprint(name).to_bytes(8, "little")
    rng = np.random.default_rng(2)
    failures = 0
    for _ in range(300):
        try:
            CODEC.decode_packets(header + rng.bytes(int(rng.integers(0, 300))))
        except CodecError:
            failures += 1
    # A random body may by chance decode as a valid small record, never crash the reader.
    assert failures >= 250


def test_unknown_fingerprint_is_named_in_the_error() -> None:
    frame = MAGIC + (0x1234_5678_9ABC_DEF0).to_bytes(8, "little") + b"\x00"
    with pytest.raises(UnknownSchema) as info:
        CODEC.decode(frame)
    assert info.value.fingerprint == 0x1234_5678_9ABC_DEF0
    assert "123456789abcdef0" in str(info.value)


def test_truncated_batch_frame_is_undecodable() -> None:
    batch = PacketBatch.zeros("s", 3, 50)
    batch.columns["ip_version"][:] = 4
    data = CODEC.encode_batch(batch)
    for cut in (len(data) - 1, len(data) // 2, 11, 10, 5):
        with pytest.raises(UndecodableMessage):
            CODEC.decode_packets(data[:cut])


def test_trailing_bytes_are_undecodable() -> None:
    batch = PacketBatch.zeros("s", 3, 5)
    with pytest.raises(UndecodableMessage):
        CODEC.decode(CODEC.encode_batch(batch) + b"\x00")


def test_column_length_disagreeing_with_count_is_undecodable() -> None:
    batch = PacketBatch.zeros("s", 0, 10)
    record = CODEC.batch_record(batch)
    record["dport"] = record["dport"][:-2]
    with pytest.raises(UndecodableMessage, match="dport"):
        CODEC.decode_packets(CODEC.encode(PACKET_BATCH, record))


def test_encoding_a_record_that_misses_a_field_is_a_schema_mismatch() -> None:
    with pytest.raises(SchemaMismatch):
        CODEC.encode("darkscope.Alert", {"kind": "surge_packets"})
    with pytest.raises(SchemaMismatch):
        CODEC.encode("darkscope.NoSuchRecord", {})


def test_non_packet_message_is_not_taken_for_packets() -> None:
    frame = CODEC.encode("darkscope.DeadLetter", _dead_letter())
    with pytest.raises(UndecodableMessage, match="not a packet message"):
        CODEC.decode_packets(frame)


def _alert() -> dict[str, Any]:
    return {
        "alert_id": "surge_packets/port/23/tcp/2022-05-08T00:00",
        "kind": "surge_packets",
        "severity": "warning",
        "dimension": "port",
        "key": "23/tcp",
        "window_start": datetime(2022, 5, 8, tzinfo=UTC),
        "window_end": datetime(2022, 5, 8, 1, tzinfo=UTC),
        "observed": 1200.0,
        "baseline": 300.0,
        "score": 9.5,
        "message": "23/tcp surged",
        "sensor_id": None,
        "evidence": {"mad": "12.5"},
    }


def _dead_letter() -> dict[str, Any]:
    return {
        "reason": "undecodable",
        "error": "bad",
        "source_topic": "t",
        "source_partition": 1,
        "source_offset": 42,
        "stage": "worker",
        "ts": datetime(2022, 5, 8, tzinfo=UTC),
        "schema_fingerprint": None,
        "key": None,
        "payload": b"\x00\x01",
    }


def _health() -> dict[str, Any]:
    return {
        "sensor_id": "s1",
        "ts": datetime(2022, 5, 8, tzinfo=UTC),
        "started": datetime(2022, 5, 7, tzinfo=UTC),
        "source": "pcap:x.pcap",
        "packets_seen": 10,
        "packets_dropped_kernel": 0,
        "packets_malformed": {"truncated_record": 1},
        "packets_out_of_prefix": 2,
        "packets_sent": 8,
        "batches_sent": 1,
        "send_failed": 0,
        "monitored_addresses": 256,
        "prefixes": ["198.51.100.0/24"],
        "version": "0.1.0",
        "packets_truncated": 3,
    }


@pytest.mark.parametrize(
    ("name", "record"),
    [
        ("darkscope.Alert", _alert()),
        ("darkscope.DeadLetter", _dead_letter()),
        ("darkscope.SensorHealth", _health()),
    ],
)
def test_per_record_messages_round_trip(name: str, record: dict[str, Any]) -> None:
    msg = CODEC.decode(CODEC.encode(name, record))
    assert msg.name == name
    assert msg.record == record


# -- schema evolution (Avro resolution through the writer fingerprint) ------------------------


def _evolved(name: str, extra_field: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(default_schemas()[name])
    schema["fields"].append(extra_field)
    return schema


NEW_FIELD = {"name": "site", "type": "string", "default": "unknown", "doc": "added in v2"}


def _codec_with(name: str, schema: dict[str, Any], writers: list[dict[str, Any]]) -> Codec:
    raw = dict(default_schemas().schemas)
    raw[name] = schema
    return Codec(SchemaSet(raw), writers=writers)


def test_older_reader_reads_a_newer_writer_with_an_added_defaulted_field() -> None:
    v2 = _evolved("darkscope.SensorHealth", NEW_FIELD)
    new_writer = _codec_with("darkscope.SensorHealth", v2, [])
    frame = new_writer.encode("darkscope.SensorHealth", {**_health(), "site": "tokyo"})
    assert read_fingerprint(frame) == fingerprint(v2) != CODEC.fingerprint("darkscope.SensorHealth")
    with pytest.raises(UnknownSchema):
        CODEC.decode(frame)  # an old reader that was never told about v2
    old_reader = Codec(writers=[v2])
    msg = old_reader.decode(frame)
    assert msg.record == _health()  # the v1 shape: the new field is dropped


def test_newer_reader_reads_an_older_writer_and_fills_the_default() -> None:
    v2 = _evolved("darkscope.SensorHealth", NEW_FIELD)
    frame = CODEC.encode("darkscope.SensorHealth", _health())
    new_reader = _codec_with("darkscope.SensorHealth", v2, [default_schemas()["darkscope.SensorHealth"]])
    msg = new_reader.decode(frame)
    assert msg.record == {**_health(), "site": "unknown"}


def test_packet_batch_evolves_like_any_record() -> None:
    v2 = _evolved(PACKET_BATCH, {"name": "capture_host", "type": "string", "default": ""})
    writer = _codec_with(PACKET_BATCH, v2, [])
    batch = PacketBatch.zeros("s", 9, 20)
    record = {**CODEC.batch_record(batch), "capture_host": "probe-3"}
    frame = writer.encode(PACKET_BATCH, record)
    assert_same_batch(Codec(writers=[v2]).decode_packets(frame), batch)


def test_incompatible_writer_is_reported_not_crashed() -> None:
    # A writer that dropped a field the reader needs and has no default for.
    schema = copy.deepcopy(default_schemas()[PACKET_EVENT])
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "dport"]
    writer = _codec_with(PACKET_EVENT, schema, [])
    row = PacketBatch.zeros("s", 0, 1).rows()[0]
    del row["dport"]
    frame = writer.encode(PACKET_EVENT, row)
    with pytest.raises(CodecError):
        Codec(writers=[schema]).decode_packets(frame)


def test_os_urandom_frames_with_magic_never_crash() -> None:
    for _ in range(200):
        data = MAGIC + os.urandom(30)
        with pytest.raises(CodecError):
            CODEC.decode(data)
