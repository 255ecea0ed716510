"""PacketBatch version 2 beside version 1: frames written with the version-1 schemas (as they
are on the topics) read into today's batch, and today's frames read by a version-1 reader."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any

import numpy as np

from schemas.batch import PacketBatch
from schemas.codec import Codec, column_dtypes_of, read_fingerprint, unpack_columns
from schemas.names import ENRICHED_BATCH, PACKET_BATCH, PACKET_EVENT, SENSOR_HEALTH
from schemas.registry import SchemaSet, default_schemas, load_schema_dir
from schemas.versions import ADDED_IN_V2, PREVIOUS_DIRS

V1 = load_schema_dir(PREVIOUS_DIRS[0])
V1_COLUMNS = column_dtypes_of(V1[PACKET_BATCH])
VICTIM6 = ipaddress.IPv6Address("2001:db8:beef::80").packed


def _v1_codec() -> Codec:
    """A reader and writer of version 1 only, as a darkscope before version 2 was."""
    raw = dict(default_schemas().schemas)
    raw.update(V1.schemas)
    return Codec(SchemaSet(raw), writers=[default_schemas()[n] for n in V1.schemas])


def _v1_batch_record() -> dict[str, Any]:
    """Three packets as version 1 wrote them: IPv4 with the reserved bit and DF in ip_flags,
    IPv6 with its M flag, an IPv6 jumbogram clipped to 65535."""
    n = 3
    cols = {name: np.zeros(n, dtype=dt) for name, dt in V1_COLUMNS.items()}
    cols["ts"][:] = 1_648_771_200 * 10**9
    cols["ip_version"][:] = [4, 6, 6]
    cols["ip_flags"][:] = [0b110, 1, 0]
    cols["length"][:] = [1500, 1280, 65535]
    cols["src"][0] = int(ipaddress.IPv4Address("192.0.2.1"))
    cols["src6"][1:] = np.frombuffer(VICTIM6 * 2, "V16")
    cols["tcp_wscale"][:] = 255
    rec: dict[str, Any] = {"sensor_id": "old", "batch_seq": 4, "count": n}
    rec.update({name: arr.tobytes() for name, arr in cols.items()})
    return rec


def test_a_version_one_batch_reads_with_the_reserved_bit_moved_and_the_length_widened() -> None:
    frame = _v1_codec().encode(PACKET_BATCH, _v1_batch_record())
    assert read_fingerprint(frame) != Codec().fingerprint(PACKET_BATCH)
    batch = Codec().decode_packets(frame)
    assert batch["ip_flags"].tolist() == [2, 1, 0]
    assert batch["ip_reserved"].tolist() == [1, 0, 0]
    assert batch["total_length"].tolist() == [1500, 1280, 65535]
    assert batch["caplen"].tolist() == batch["truncated"].tolist() == [0, 0, 0]  # not known
    assert bytes(batch["inner_dst6"][1].tobytes()) == bytes(16)
    assert bytes(batch["src6"][2].tobytes()) == VICTIM6


def test_a_version_one_enriched_batch_reads_into_todays_batch() -> None:
    v1 = _v1_codec()
    enriched = {
        "packets": _v1_batch_record(),
        "source_topic": "t",
        "source_partition": 1,
        "source_offset": 9,
        "geo_db_version": "",
        "asn_db_version": "",
        "regions": ["ZZ"],
        "region_names": ["Unknown"],
        "as_orgs": [""],
        "services": ["unknown"],
        **{
            name: np.zeros(3, dt).tobytes()
            for name, dt in column_dtypes_of(V1[ENRICHED_BATCH]).items()
            if name != "packets"
        },
    }
    msg = Codec().decode(v1.encode(ENRICHED_BATCH, enriched))
    batch = Codec().batch_from_record(msg.record["packets"])
    assert batch["ip_reserved"].tolist() == [1, 0, 0] and len(batch) == 3


def test_a_version_one_event_reads_with_its_defaults_resolved() -> None:
    event = {k: v for k, v in PacketBatch.zeros("old", 0, 1).rows()[0].items() if k not in ADDED_IN_V2}
    event.update(ip_version=4, src_addr=bytes(4), dst_addr=bytes(4), ip_flags=0b110, length=40)
    batch = Codec().decode_packets(_v1_codec().encode(PACKET_EVENT, event))
    assert (batch["ip_flags"][0], batch["ip_reserved"][0], batch["total_length"][0]) == (2, 1, 40)


def test_a_version_one_sensor_health_reads_with_no_truncated_packets() -> None:
    record = {
        "sensor_id": "old",
        "ts": datetime(2022, 5, 8, tzinfo=UTC),
        "started": datetime(2022, 5, 7, tzinfo=UTC),
        "source": "pcap:x.pcap",
        "packets_seen": 10,
        "packets_sent": 8,
        "batches_sent": 1,
        "monitored_addresses": 256,
    }
    msg = Codec().decode(_v1_codec().encode(SENSOR_HEALTH, record))
    assert msg.record["packets_truncated"] == 0 and msg.record["packets_seen"] == 10


def _v2_batch() -> PacketBatch:
    batch = PacketBatch.zeros("new", 1, 2)
    c = batch.columns
    c["ip_version"][:] = [4, 6]
    c["ip_flags"][:], c["ip_reserved"][:] = [2, 0], [1, 0]
    c["total_length"][:] = [1500, 100_040]
    c["length"][:] = [1500, 65535]
    c["caplen"][:], c["truncated"][:] = [96, 96], [0, 4]
    c["protocol"][1], c["icmp_type"][1], c["inner_protocol"][1] = 58, 1, 6
    c["inner_dst6"][1] = np.frombuffer(VICTIM6, "V16")[0]
    return batch


def test_todays_batch_reads_in_a_version_one_reader_as_version_one_fields() -> None:
    frame = Codec().encode_batch(_v2_batch())
    msg = _v1_codec().decode(frame)  # resolved to the version-1 record: new fields skipped
    assert set(msg.record) == {f["name"] for f in V1[PACKET_BATCH]["fields"]}
    cols = unpack_columns(msg.record, V1_COLUMNS, rows=2)
    assert cols["length"].tolist() == [1500, 65535]
    assert cols["ip_flags"].tolist() == [2, 0]  # DF, without the reserved bit
    assert cols["inner_dst"].tolist() == [0, 0]  # an IPv6 quote has no IPv4 form


def test_todays_batch_round_trips_every_version_two_column() -> None:
    batch = _v2_batch()
    got = Codec().decode_packets(Codec().encode_batch(batch))
    for name in ADDED_IN_V2:
        np.testing.assert_array_equal(got[name], batch[name], err_msg=name)
