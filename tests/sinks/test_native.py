"""Enriched batches -> ClickHouse Native blocks of the packets table, and the schema they feed."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from schemas.batch import PacketBatch
from schemas.codec import Codec
from schemas.fingerprints import Fingerprint
from sinks.arrow import EnrichedColumns, arrow_table, columns_from_record
from sinks.native import DERIVED_COLUMNS, NATIVE_COLUMNS, native_block
from sinks.schema import MIGRATIONS, SCHEMA_MIGRATIONS
from sinks.store import Store
from tests.sinks.conftest import EnrichedWeek

# Every column of the raw table, as a row hash, and the rows counted.
_TABLE_HASH = "SELECT groupBitXor(cityHash64(*)), count() FROM packets"


def test_native_block_stores_exactly_what_the_arrow_table_stores(tmp_path: Path, week: EnrichedWeek) -> None:
    codec_parts = [columns_from_record(Codec(), r) for r in week.records[:6]]
    groups = [codec_parts[:1], codec_parts[1:6]]  # one batch, and several with other dictionaries
    with Store.open(f"chdb://{tmp_path / 'a'}") as arrow_store:
        arrow_store.migrate()
        for i, g in enumerate(groups):
            arrow_store.insert_arrow("packets", arrow_table(g), dedup_token=str(i))
        expected = arrow_store.query(_TABLE_HASH).result_rows
    with Store.open(f"chdb://{tmp_path / 'n'}") as native_store:
        native_store.migrate()
        for i, g in enumerate(groups):
            native_store.insert_enriched(g, dedup_token=str(i))
        assert native_store.query(_TABLE_HASH).result_rows == expected
    assert expected[0][1] == sum(len(p) for p in codec_parts)


def _columns(n: int, regions: list[str], sensor: str = "s1", offset: int = 0) -> EnrichedColumns:
    batch = PacketBatch.zeros(sensor, offset, n)
    batch.columns["ts"][:] = 1_648_771_200 * 10**9 + np.arange(n)
    batch.columns["dport"][:] = np.arange(n) % 65536
    return EnrichedColumns(
        batch,
        "t.packets",
        0,
        offset,
        "geo-1",
        "asn-1",
        regions,
        [f"name of {r}" for r in regions],
        (np.arange(n) % len(regions)).astype(np.uint16),
        np.arange(n, dtype=np.uint32),
        ["org"],
        np.zeros(n, np.uint16),
        ["svc"],
        np.zeros(n, np.uint16),
        np.zeros(n, np.uint16),
        np.zeros(n, np.uint16),
    )


def test_dictionaries_over_255_keys_take_wider_indexes(store: Store) -> None:
    regions = [f"R{i:03d}" for i in range(300)]
    store.insert_enriched(
        [_columns(600, regions), _columns(5, ["XX"], sensor="s2", offset=1)], dedup_token="w"
    )
    rows = store.query(
        "SELECT region, region_name, sensor, count() FROM packets "
        "WHERE region IN ('R000', 'R299', 'XX') GROUP BY ALL ORDER BY region"
    ).result_rows
    assert rows == [
        ("R000", "name of R000", "s1", 2),
        ("R299", "name of R299", "s1", 2),
        ("XX", "name of XX", "s2", 5),
    ]
    assert store.query("SELECT uniqExact(region), max(source_offset) FROM packets").result_rows == [(301, 1)]


def test_block_names_every_column_it_carries_once() -> None:
    names, block = native_block([_columns(3, ["US"])])
    assert names == [n for n, _ in NATIVE_COLUMNS + DERIVED_COLUMNS]
    assert len(set(names)) == len(names)
    assert block[:2] == bytes([len(names), 3])  # LEB128 column count, row count


def _ip(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def _edge_cases() -> EnrichedColumns:
    """Packets for every branch of the DEFAULTs of day, source and victim."""
    cols = _columns(12, ["US"], offset=7)
    b, fp = cols.batch, cols.fp_flags
    b["src"][:] = [_ip(f"198.51.{i}.{i + 1}") for i in range(12)]
    b["inner_dst"][:] = [_ip(f"203.0.113.{i + 1}") for i in range(12)]
    b["ip_version"][:] = 4
    b["protocol"][:] = 6
    backscatter = int(Fingerprint.BACKSCATTER)
    # 0: a scan, not backscatter -> victim 0.0.0.0
    fp[0] = int(Fingerprint.MIRAI)
    # 1: SYN-ACK backscatter -> victim src
    fp[1] = backscatter
    # 2: ICMP port unreachable quoting a TCP datagram -> victim inner_dst; 3: time exceeded
    # quoting nothing -> src; 4: echo reply (not an error) -> src; 5: an error, not backscatter -> 0
    for row, icmp_type, inner, flags in (
        (2, 3, 6, backscatter | 1),
        (3, 11, 0, backscatter),
        (4, 0, 6, backscatter),
        (5, 3, 6, 0),
    ):
        b["protocol"][row], b["icmp_type"][row], b["inner_protocol"][row], fp[row] = (
            1,
            icmp_type,
            inner,
            flags,
        )
    # 6-7: IPv6 packets (source = src6; the IPv4 src is 0.0.0.0): 6 a SYN-ACK backscatter ->
    # victim src6; 7 an ICMPv6 error quoting a TCP datagram -> victim inner_dst6
    for row, src6 in ((6, "2001:db8::1"), (7, "2001:db8:ffff::2")):
        b["ip_version"][row], b["src"][row] = 6, 0
        b["src6"][row] = np.frombuffer(ipaddress.IPv6Address(src6).packed, "V16")[0]
    fp[6] = backscatter
    b["protocol"][7], b["icmp_type"][7], b["inner_protocol"][7], fp[7] = 58, 1, 6, backscatter
    b["inner_dst6"][7] = np.frombuffer(ipaddress.IPv6Address("2001:db8:beef::80").packed, "V16")[0]
    # 8: before 1970, 9: the last nanosecond of a day, 10: past 2149 (toDate wraps), 11: the epoch
    b["ts"][8] = -3 * 86_400 * 10**9 + 5
    b["ts"][9] = 1_656_633_600 * 10**9 - 1
    b["ts"][10] = 7_258_118_400 * 10**9
    b["ts"][11] = 0
    return cols


def test_day_source_and_victim_sent_equal_what_the_defaults_compute(store: Store, week: EnrichedWeek) -> None:
    parts = [_edge_cases(), *(columns_from_record(Codec(), r) for r in week.records[:4])]
    store.client.command("CREATE TABLE packets_defaults AS packets")
    columns, block = native_block(parts)
    store.insert_native("packets", columns, block, dedup_token="sent")
    columns, block = native_block(parts, derived=False)
    assert not {"day", "source", "victim"} & set(columns)
    store.insert_native("packets_defaults", columns, block, dedup_token="defaults")

    def rows(table: str) -> list[tuple[object, ...]]:
        return list(store.query(f"SELECT * FROM {table} ORDER BY ALL").result_rows)

    assert rows("packets") == rows("packets_defaults")
    assert len(rows("packets")) == sum(len(p) for p in parts)
    edge = store.query(
        "SELECT toString(day), toString(source), toString(victim) FROM packets "
        "WHERE source_offset = 7 ORDER BY batch_seq, source, victim"
    ).result_rows
    assert sorted(edge) == sorted(
        [
            ("2022-04-01", "::ffff:198.51.0.1", "::ffff:0.0.0.0"),
            ("2022-04-01", "::ffff:198.51.1.2", "::ffff:198.51.1.2"),
            ("2022-04-01", "::ffff:198.51.2.3", "::ffff:203.0.113.3"),
            ("2022-04-01", "::ffff:198.51.3.4", "::ffff:198.51.3.4"),
            ("2022-04-01", "::ffff:198.51.4.5", "::ffff:198.51.4.5"),
            ("2022-04-01", "::ffff:198.51.5.6", "::ffff:0.0.0.0"),
            ("2022-04-01", "2001:db8::1", "2001:db8::1"),
            ("2022-04-01", "2001:db8:ffff::2", "2001:db8:beef::80"),
            ("2149-06-04", "::ffff:198.51.8.9", "::ffff:0.0.0.0"),
            ("2022-06-30", "::ffff:198.51.9.10", "::ffff:0.0.0.0"),
            ("2020-07-27", "::ffff:198.51.10.11", "::ffff:0.0.0.0"),
            ("1970-01-01", "::ffff:198.51.11.12", "::ffff:0.0.0.0"),
        ]
    )


def test_daily_rollups_read_the_hourly_ones_and_a_retry_fills_a_view_that_missed_the_insert(
    store: Store, week: EnrichedWeek
) -> None:
    view = str(
        store.query(
            "SELECT create_table_query FROM system.tables WHERE name = 'rollup_port_day_mv'"
        ).result_rows[0][0]
    )
    assert "rollup_port_hour" in view
    rec, n = week.records[0], len(week.batches[0].batch)

    def port_packets() -> list[int]:
        return [
            int(store.query(sql).result_rows[0][0] or 0)
            for sql in (
                "SELECT count() FROM packets",
                "SELECT sum(packets) FROM rollup_port_hour",
                "SELECT sum(packets) FROM rollup_port_day",
            )
        ]

    # The daily view is missing while the first attempt runs (as if a crash cut it short).
    store.client.command("DROP VIEW rollup_port_day_mv")
    store.insert_enriched(rec, dedup_token="g1")
    assert port_packets() == [n, n, 0]
    store.client.command(view)
    store.insert_enriched(rec, dedup_token="g1")
    store.insert_enriched(rec, dedup_token="g1")
    assert port_packets() == [n, n, n]


def test_a_store_migrated_before_step_5_gets_daily_rollups_from_the_hourly_ones(tmp_path: Path) -> None:
    with Store.open(f"chdb://{tmp_path / 'old'}") as s:
        s.client.command(SCHEMA_MIGRATIONS)
        for step in MIGRATIONS[:4]:  # as an older darkscope left it: daily views of the raw table
            for statement in step.statements:
                s.client.command(statement)
            s.client.insert(
                "schema_migrations",
                [[step.version, step.name, datetime.now(tz=UTC)]],
                column_names=["version", "name", "applied_at"],
            )
        assert "rollup_asn_hour" not in _view(s, "rollup_asn_day_mv")
        assert s.migrate() == MIGRATIONS[-1].version
        for name in ("port", "region", "asn", "fp_region"):
            assert f"rollup_{name}_hour" in _view(s, f"rollup_{name}_day_mv")
        engine = str(
            s.query("SELECT engine_full FROM system.tables WHERE name = 'packets'").result_rows[0][0]
        )
        assert "min_bytes_for_wide_part" in engine


def _view(s: Store, name: str) -> str:
    return str(
        s.query(f"SELECT create_table_query FROM system.tables WHERE name = '{name}'").result_rows[0][0]
    )


def test_a_batch_over_a_year_of_days_is_stored_in_one_insert(store: Store) -> None:
    cols = _columns(400, ["US"])
    cols.batch["ts"][:] = (1_600_000_000 + 86_400 * np.arange(400)) * 10**9  # a packet a day
    store.insert_enriched([cols], dedup_token="sparse")
    assert store.query("SELECT count(), uniqExact(day) FROM packets").result_rows == [(400, 400)]
