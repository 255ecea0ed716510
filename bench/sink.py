"""Benchmark: packets/s from the enriched topic into chDB through the sink, against a raw
clickhouse-connect insert of the same columns into the same schema, in the same run.

Simulates and enriches a stretch of 2022Q2 in-process (as a worker would), publishes the
EnrichedBatch frames to a fresh enriched topic (4 partitions), then alternates:

- raw (the reference): the same rows, grouped as the sink groups them (per partition, about
  ``--batch-rows`` rows) and encoded beforehand as the sink encodes them (one ClickHouse Native
  block per insert, :mod:`sinks.native`), inserted with ``client.raw_insert(fmt="Native")``
  with the sink's insert settings and one deduplication token per insert, into a fresh
  database with the full schema (raw table + the eight rollup views); only the insert calls
  are timed. So it is the floor of what the store costs, without Kafka, decoding or encoding;
- raw, table only: the same into a database that has the raw table and no views;
- raw, DEFAULTs in ClickHouse: the same, full schema, with blocks that leave ``day``,
  ``source`` and ``victim`` to their DEFAULT expressions (the sink's block before it computed
  them), to see what computing them in NumPy saves the engine;
- raw insert_arrow: the same groups as Arrow tables through ``client.insert_arrow`` (the
  sink's previous path), full schema, for comparison;
- sink: :class:`sinks.sink.Sink` consumes the topic (own consumer group) into a fresh database
  with the full schema; the rate is rows / (last commit - first batch read), so consumer-group
  start-up is not counted. It includes Kafka fetch, Avro decode, the Native block build, the
  intent and offset commits, and the same inserts (which run on the sink's insert thread while
  its loop reads, decodes and builds the next group, so the sink can come close to raw).

The best of ``--repeat`` runs of each is printed. Needs a broker: DARKSCOPE_BOOTSTRAP (default
127.0.0.1:9092). Prints figures, never asserts.

    .venv/bin/python bench/sink.py [--rows 1000000] [--batch-size 10000] [--batch-rows 200000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Producer
from profiling import py_spy  # bench/, the script's own folder, is on sys.path

from core.settings import KafkaSettings, SinkSettings, TopicNames
from core.topics import admin_client, ensure_topics
from producers.sim.simulate import simulate_quarter
from schemas.codec import Codec
from sinks.arrow import EnrichedColumns, arrow_table, columns_from_record
from sinks.native import native_block
from sinks.schema import RAW_PART_SETTINGS
from sinks.sink import Sink
from sinks.store import Store
from streams.enrich import Enricher
from streams.fingerprints import SourceVerdicts
from streams.geo import GeoResolver
from streams.services import ServiceRegistry

PARTITIONS = 4


def enriched_frames(rows: int, batch_size: int) -> list[bytes]:
    """About ``rows`` simulated packets, enriched, as EnrichedBatch frames."""
    days = 2
    sim = simulate_quarter("2022Q2", packets_per_day=rows // days, days=days, seed=1, batch_size=batch_size)
    with GeoResolver.default() as geo:
        enricher = Enricher(geo, ServiceRegistry.load(), SourceVerdicts())
        return [
            enricher.encode(enricher.enrich(b, "bench.packets", i % PARTITIONS, i)) for i, b in enumerate(sim)
        ]


def publish(bootstrap: str, topic: str, frames: list[bytes]) -> None:
    """Frame i to partition i % 4."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "message.max.bytes": 8_000_000,
            "linger.ms": 20,
            "batch.size": 4_000_000,
        }
    )
    for i, frame in enumerate(frames):
        while True:
            try:
                producer.produce(topic, frame, partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(60)


def sink_groups(frames: list[bytes], batch_rows: int) -> list[list[EnrichedColumns]]:
    """The frames decoded and grouped as the sink groups them: per partition, ~batch_rows rows."""
    codec = Codec()
    groups: list[list[EnrichedColumns]] = []
    for p in range(PARTITIONS):
        current: list[EnrichedColumns] = []
        rows = 0
        for frame in frames[p::PARTITIONS]:
            cols = columns_from_record(codec, codec.decode(frame).record)
            current.append(cols)
            rows += len(cols)
            if rows >= batch_rows:
                groups.append(current)
                current, rows = [], 0
        if current:
            groups.append(current)
    return groups


def fresh_database(dsn: str, name: str, table_only: bool = False) -> Store:
    """A new database in the store with the whole schema (or only the raw table, as migrated)."""
    with Store.open(dsn) as admin:
        admin.client.command(f"CREATE DATABASE {name}")
    store = Store.open(dsn, database=name)
    store.migrate()
    if table_only:
        # The raw table as every migration left it, without the views an insert feeds.
        views = store.query(
            "SELECT name FROM system.tables "
            "WHERE database = currentDatabase() AND engine = 'MaterializedView'"
        ).result_rows
        for (view,) in views:
            store.client.command(f"DROP VIEW {view}")
        store.client.command(RAW_PART_SETTINGS)
    return store


def raw_insert(store: Store, groups: list[list[EnrichedColumns]], tag: str, derived: bool = True) -> float:
    """Rows/s of plain client.raw_insert(fmt="Native") calls (blocks built beforehand), with the
    sink's insert settings and one deduplication token per insert, so the server does the same work."""
    blocks = [native_block(g, derived=derived) for g in groups]
    rows = sum(len(c) for g in groups for c in g)
    t0 = time.perf_counter()
    for i, (columns, block) in enumerate(blocks):
        store.client.raw_insert(
            "packets", columns, block, settings=store.insert_settings(f"{tag}:{i}"), fmt="Native"
        )
    return rows / (time.perf_counter() - t0)


def raw_insert_arrow(store: Store, groups: list[list[EnrichedColumns]], tag: str) -> float:
    """Rows/s of plain client.insert_arrow calls (tables built beforehand), same settings."""
    tables = [arrow_table(g) for g in groups]
    rows = sum(t.num_rows for t in tables)
    t0 = time.perf_counter()
    for i, t in enumerate(tables):
        store.client.insert_arrow("packets", t, settings=store.insert_settings(f"{tag}:{i}"))
    return rows / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="packets to simulate")
    ap.add_argument("--batch-size", type=int, default=10_000, help="packets per enriched message")
    ap.add_argument("--batch-rows", type=int, default=SinkSettings().batch_rows, help="rows per sink insert")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--profile", metavar="FILE", help="record the sink runs with py-spy into FILE")
    args = ap.parse_args()
    bootstrap = os.environ.get("DARKSCOPE_BOOTSTRAP", "127.0.0.1:9092")

    t0 = time.perf_counter()
    frames = enriched_frames(args.rows, args.batch_size)
    groups = sink_groups(frames, args.batch_rows)
    rows = sum(len(c) for g in groups for c in g)
    print(
        f"{rows} packets in {len(frames)} enriched batches of ~{args.batch_size}, "
        f"{len(groups)} inserts of ~{args.batch_rows} rows (prepared in {time.perf_counter() - t0:.1f} s)"
    )
    tag = uuid.uuid4().hex[:8]
    topics = TopicNames(
        **{
            f: f"bench.sink.{tag}.{f}"
            for f in ("packets", "enriched", "counts", "alerts", "sensors", "deadletter")
        }
    )
    kafka = KafkaSettings(bootstrap=bootstrap, partitions=PARTITIONS)
    ensure_topics(kafka, [topics.enriched, topics.sensors, topics.deadletter])
    publish(bootstrap, topics.enriched, frames)
    del frames

    raw_rates, table_rates, defaults_rates, arrow_rates, sink_rates = [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="darkscope-bench-sink-") as tmp:
        dsn = f"chdb://{tmp}/store"
        for run in range(args.repeat):
            with fresh_database(dsn, f"raw_{run}") as store:
                raw_rates.append(raw_insert(store, groups, f"raw-{run}"))
            with fresh_database(dsn, f"table_{run}", table_only=True) as store:
                table_rates.append(raw_insert(store, groups, f"table-{run}"))
            with fresh_database(dsn, f"defaults_{run}") as store:
                defaults_rates.append(raw_insert(store, groups, f"defaults-{run}", derived=False))
            with fresh_database(dsn, f"arrow_{run}") as store:
                arrow_rates.append(raw_insert_arrow(store, groups, f"arrow-{run}"))
            settings = SinkSettings(
                dsn=dsn, group_id=f"bench-sink-{tag}-{run}", batch_rows=args.batch_rows, linger=0.5
            )
            with fresh_database(dsn, f"sink_{run}") as store:
                with py_spy(os.getpid(), args.profile):
                    stats = Sink(store, settings, kafka, topics).run(exit_when_idle=2.0)
                if stats.rows != rows:
                    print(f"  sink run {run}: stored {stats.rows} of {rows} rows!")
                sink_rates.append(stats.rows_per_second())
            print(
                f"  run {run}: raw Native {raw_rates[-1] / 1e6:.2f} M rows/s, "
                f"table only {table_rates[-1] / 1e6:.2f}, "
                f"DEFAULTs in ClickHouse {defaults_rates[-1] / 1e6:.2f}, "
                f"insert_arrow {arrow_rates[-1] / 1e6:.2f}, sink {sink_rates[-1] / 1e6:.2f} M rows/s"
            )
    # Keep the client and wait: a client dropped at once destroys its handle before the request is sent.
    admin = admin_client(bootstrap)
    for fut in admin.delete_topics([topics.enriched, topics.sensors, topics.deadletter]).values():
        fut.result()
    raw, table, arrow, sink = max(raw_rates), max(table_rates), max(arrow_rates), max(sink_rates)
    defaults = max(defaults_rates)
    print(f"raw Native raw_insert, full schema (packets + 8 rollups): {raw / 1e6:6.2f} M rows/s")
    print(f"raw Native raw_insert, packets table only:               {table / 1e6:6.2f} M rows/s")
    print(f"raw Native, DEFAULTs computed by ClickHouse, full schema: {defaults / 1e6:6.2f} M rows/s")
    print(f"raw insert_arrow (Arrow), full schema:                   {arrow / 1e6:6.2f} M rows/s")
    print(f"sink, enriched topic -> chDB, full schema:               {sink / 1e6:6.2f} M rows/s")
    print(f"sink / raw (same schema): {sink / raw:.2f}   (floor: 1M rows/s and 0.5)")
    print(f"sink / raw with DEFAULTs in ClickHouse (the block before): {sink / defaults:.2f}")


if __name__ == "__main__":
    main()
