"""Enriched batches -> ClickHouse Native blocks of the packets table, and the schema they feed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from schemas.batch import PacketBatch
from schemas.codec import Codec
from sinks.arrow import EnrichedColumns, arrow_table, columns_from_record
from sinks.native import NATIVE_COLUMNS, native_block
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
    assert names == [n for n, _ in NATIVE_COLUMNS]
    assert len(set(names)) == len(names)
    assert block[:2] == bytes([len(names), 3])  # LEB128 column count, row count


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
