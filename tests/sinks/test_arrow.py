"""EnrichedBatch records -> Arrow columns of the packets table."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest

from core.errors import UndecodableMessage
from schemas.batch import PacketBatch
from schemas.codec import Codec
from schemas.fingerprints import Fingerprint
from sinks.arrow import EnrichedColumns, arrow_table, columns_from_record
from sinks.store import Store
from tests.sinks.conftest import EnrichedWeek


def _columns(
    batch: PacketBatch, regions: list[str], region_idx: list[int], offset: int = 0
) -> EnrichedColumns:
    n = len(batch)
    return EnrichedColumns(
        batch,
        "t.packets",
        1,
        offset,
        "geo-1",
        "",
        regions,
        [f"name of {r}" for r in regions],
        np.array(region_idx, np.uint16),
        np.zeros(n, np.uint32),
        [""],
        np.zeros(n, np.uint16),
        ["telnet"],
        np.zeros(n, np.uint16),
        np.zeros(n, np.uint16),
        np.zeros(n, np.uint16),
    )


def test_record_missing_a_field_is_undecodable(week: EnrichedWeek) -> None:
    rec = dict(week.records[0])
    del rec["fp_verdict"]
    with pytest.raises(UndecodableMessage, match="fp_verdict"):
        columns_from_record(Codec(), rec)


def test_index_outside_its_dictionary_is_undecodable(week: EnrichedWeek) -> None:
    rec = dict(week.records[0])
    rec["services"] = []
    with pytest.raises(UndecodableMessage, match="service_idx"):
        columns_from_record(Codec(), rec)


def test_batches_with_different_dictionaries_join_into_one_table() -> None:
    a = _columns(PacketBatch.zeros("s1", 0, 3), ["US", "GB"], [0, 1, 1])
    b = _columns(PacketBatch.zeros("s2", 1, 2), ["GB", "CN"], [1, 0], offset=1)
    table = arrow_table([a, b])
    assert table.column("region").to_pylist() == ["US", "GB", "GB", "CN", "GB"]
    assert table.column("region_name").to_pylist()[-2:] == ["name of CN", "name of GB"]
    assert table.column("sensor").to_pylist() == ["s1"] * 3 + ["s2"] * 2
    assert table.column("source_offset").to_pylist() == [0, 0, 0, 1, 1]


def test_ipv6_sources_and_backscatter_victims_are_stored(store: Store) -> None:
    b = PacketBatch.zeros("s1", 0, 3)
    c = b.columns
    c["ts"][:] = 1_648_771_200 * 10**9
    c["ip_version"][:] = [6, 4, 4]
    c["src6"][0] = np.frombuffer(ipaddress.IPv6Address("2001:db8::7").packed, dtype="V16")[0]
    c["src"][1:] = int(ipaddress.IPv4Address("192.0.2.1"))
    c["protocol"][:] = [6, 6, 1]
    c["tcp_flags"][:] = [2, 0x12, 0]
    c["icmp_type"][2] = 3  # an ICMP error quoting a datagram sent to the victim
    c["inner_protocol"][2] = 6
    c["inner_dst"][2] = int(ipaddress.IPv4Address("203.0.113.5"))
    cols = _columns(b, ["ZZ"], [0, 0, 0])
    flags = np.array([0, Fingerprint.BACKSCATTER, Fingerprint.BACKSCATTER], np.uint16)
    cols = EnrichedColumns(**{**cols.__dict__, "fp_flags": flags})
    store.insert_enriched(cols, dedup_token="v6")
    rows = store.query(
        "SELECT toString(source), toString(src6), toString(victim), day FROM packets "
        "ORDER BY ip_version DESC, protocol DESC"
    ).result_rows
    assert [r[:3] for r in rows] == [
        ("2001:db8::7", "2001:db8::7", "::ffff:0.0.0.0"),  # not backscatter: no victim
        ("::ffff:192.0.2.1", "::", "::ffff:192.0.2.1"),
        ("::ffff:192.0.2.1", "::", "::ffff:203.0.113.5"),
    ]
    assert str(rows[0][3]) == "2022-04-01"
