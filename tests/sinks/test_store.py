"""The Store on the real chDB engine: schema, inserts, deduplication, health, queries, locks."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.errors import QueryFailed, StoreLocked
from schemas.registry import default_schemas
from sinks.arrow import columns_from_record
from sinks.native import RENAMED
from sinks.schema import MIGRATIONS, ROLLUP_TABLES
from sinks.store import Store
from tests.sinks.conftest import EnrichedWeek
from tests.sinks.truth import assert_store_matches_truth


def _columns(store: Store, table: str) -> dict[str, str]:
    return {str(r[0]): str(r[1]) for r in store.query(f"DESCRIBE TABLE {table}").result_rows}


def test_migrate_is_idempotent_and_versioned(store: Store) -> None:
    latest = max(m.version for m in MIGRATIONS)
    assert store.version() == latest
    assert store.migrate() == latest
    assert store.migrate() == latest
    rows = store.query("SELECT version, name FROM schema_migrations FINAL ORDER BY version").result_rows
    assert [v for v, _ in rows] == [m.version for m in MIGRATIONS]
    assert {"packets", "sensor_health", "daily_ports", "daily_regions", "daily_mirai", *ROLLUP_TABLES} <= set(
        store.tables()
    )


def test_analyst_views_have_the_documented_columns(store: Store) -> None:
    assert _columns(store, "daily_ports") == {
        "day": "Date",
        "sensor": "String",
        "protocol": "UInt8",
        "dport": "UInt16",
        "service": "String",
        "packets": "UInt64",
        "sources": "UInt64",
    }
    regions = {
        "day": "Date",
        "sensor": "String",
        "region": "String",
        "region_name": "String",
        "packets": "UInt64",
        "sources": "UInt64",
    }
    assert _columns(store, "daily_regions") == regions
    assert _columns(store, "daily_mirai") == regions
    fp = _columns(store, "rollup_fp_region_day")
    assert fp["packets"] == "SimpleAggregateFunction(sum, UInt64)"
    assert fp["sources"] == "AggregateFunction(uniq, IPv6)"
    assert set(fp) == {"day", "sensor", "fingerprint", "region", "region_name", "packets", "sources"}
    assert set(_columns(store, "rollup_region_day")) == {
        "day",
        "sensor",
        "region",
        "region_name",
        "packets",
        "sources",
    }
    health = _columns(store, "sensor_health")
    assert health["ts"] == "DateTime64(3, 'UTC')"
    assert {"sensor", "started", "packets_seen", "packets_dropped_kernel", "monitored_addresses"} <= set(
        health
    )


def test_packets_table_has_a_column_for_every_avro_packet_field(store: Store) -> None:
    cols = _columns(store, "packets")
    schemas = default_schemas()
    packet_fields = [f["name"] for f in schemas["darkscope.PacketBatch"]["fields"] if "dtype" in f]
    # ``length`` holds the 32-bit total_length (the batch's length is version 1's clipped copy).
    renamed = {field: column for column, (field, _, _) in RENAMED.items()}
    assert {renamed.get(f, f) for f in packet_fields} <= set(cols)
    assert cols["length"] == "UInt32"
    assert cols["ts"] == "DateTime64(9, 'UTC')"
    assert (cols["src"], cols["dst"], cols["src6"]) == ("IPv4", "IPv4", "IPv6")
    assert cols["region"] == cols["service"] == cols["as_org"] == "LowCardinality(String)"
    assert cols["geo_db_version"] == cols["asn_db_version"] == "LowCardinality(String)"
    # Dictionary-encoded enrichments arrive decoded, per-packet ones as they are.
    enriched = {f["name"] for f in schemas["darkscope.EnrichedBatch"]["fields"]}
    stored_as = {"region_idx": "region", "as_org_idx": "as_org", "service_idx": "service", "packets": "ts"}
    stored_as |= {
        "regions": "region",
        "region_names": "region_name",
        "as_orgs": "as_org",
        "services": "service",
    }
    for name in enriched:
        assert stored_as.get(name, name) in cols, name


def test_a_week_of_enriched_batches_equals_the_ground_truth(store: Store, week: EnrichedWeek) -> None:
    for i, rec in enumerate(week.records):
        # Half as decoded records (the sink's path), half as in-memory Enriched batches.
        src = rec if i % 2 else week.batches[i]
        assert store.insert_enriched(src, dedup_token=f"batch-{i}") == len(week.batches[i].batch)
    assert_store_matches_truth(store, week.truth)
    versions = store.query(
        "SELECT DISTINCT geo_db_version FROM packets WHERE geo_db_version != ''"
    ).result_rows
    assert versions == [(week.geo_db_version,)]


def test_same_dedup_token_counts_once_even_after_reopening(tmp_path: Path, week: EnrichedWeek) -> None:
    dsn = f"chdb://{tmp_path / 'store'}"
    rec = week.records[0]
    n = len(week.batches[0].batch)
    with Store.open(dsn) as s:
        s.migrate()
        s.insert_enriched(rec, dedup_token="enriched:0:0-0")
        s.insert_enriched(rec, dedup_token="enriched:0:0-0")
    with Store.open(dsn) as s:
        s.insert_enriched(columns_from_record(s.codec, rec), dedup_token="enriched:0:0-0")
        assert s.query("SELECT count() FROM packets").result_rows == [(n,)]
        for table in ROLLUP_TABLES:
            if not table.startswith("rollup_fp"):
                assert s.query(f"SELECT sum(packets) FROM {table}").result_rows == [(n,)], table
        # Another token is another batch.
        s.insert_enriched(rec, dedup_token="enriched:0:1-1")
        assert s.query("SELECT sum(packets) FROM daily_ports").result_rows == [(2 * n,)]


def test_insert_without_token_is_never_deduplicated(store: Store, week: EnrichedWeek) -> None:
    store.insert_enriched(week.records[1])
    store.insert_enriched(week.records[1])
    assert store.query("SELECT count() FROM packets").result_rows == [(2 * len(week.batches[1].batch),)]


def test_sensor_health_records_are_stored_and_a_repeat_collapses(store: Store) -> None:
    t0 = datetime(2022, 4, 1, tzinfo=UTC)
    rec = {
        "sensor_id": "s1",
        "ts": datetime(2022, 4, 1, 0, 5, tzinfo=UTC),
        "started": t0,
        "source": "iface:eth1",
        "packets_seen": 1000,
        "packets_dropped_kernel": 7,
        "packets_malformed": {"truncated": 2},
        "packets_out_of_prefix": 3,
        "packets_sent": 990,
        "batches_sent": 1,
        "send_failed": 0,
        "monitored_addresses": 256,
        "prefixes": ["198.51.100.0/24"],
        "version": "0.1.0",
    }
    assert store.insert_sensor_health([rec, rec]) == 2
    rows = store.query(
        "SELECT sensor, packets_seen, packets_dropped_kernel, monitored_addresses, "
        "packets_malformed['truncated'] FROM sensor_health FINAL"
    ).result_rows
    assert rows == [("s1", 1000, 7, 256, 2)]


def test_query_takes_parameters_and_bad_sql_fails_clearly(store: Store, week: EnrichedWeek) -> None:
    store.insert_enriched(week.records[2], dedup_token="t")
    n = store.query("SELECT count() FROM packets WHERE dport = {p:UInt16}", {"p": 23}).result_rows[0][0]
    assert n == int((week.batches[2].batch["dport"] == 23).sum()) > 0
    assert store.query_arrow("SELECT count() AS n FROM packets").column("n").to_pylist() == [
        len(week.batches[2].batch)
    ]
    with pytest.raises(QueryFailed, match="no_such_table"):
        store.query("SELECT * FROM no_such_table")


def test_ttl_setting_is_applied_and_removed(store: Store) -> None:
    def engine() -> str:
        return str(
            store.query("SELECT engine_full FROM system.tables WHERE name = 'packets'").result_rows[0][0]
        )

    assert " TTL " not in engine()
    store.migrate(ttl_days=90)
    assert "toIntervalDay(90)" in engine().replace(" ", "") or "INTERVAL90DAY" in engine().replace(" ", "")
    store.migrate(ttl_days=0)
    assert " TTL " not in engine()


HOLDER = """
import sys, time
from sinks.store import Store
s = Store.open(sys.argv[1]); s.migrate()
print("held", flush=True)
time.sleep(60)
"""


def test_opening_a_store_another_process_holds_says_who_holds_it(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'held'}"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, dsn], stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2]
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"held"
        with pytest.raises(StoreLocked, match=rf"in use by process {proc.pid}.*darkscope sink"):
            Store.open(dsn)
    finally:
        proc.kill()
        proc.wait()
    time.sleep(0.2)
    with Store.open(dsn) as s:  # free again once the holder is gone
        assert s.version() == max(m.version for m in MIGRATIONS)
