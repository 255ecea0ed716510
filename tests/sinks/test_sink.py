"""The sink on the real broker and real chDB: exact loads, crash replays, retries, dead letters."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from darkscope.settings import KafkaSettings, SinkSettings, TopicNames
from schemas.codec import Codec
from sinks.sink import INTENT_PREFIX, Sink, SinkStats
from sinks.store import Store
from tests.kafka_helpers import read_all
from tests.sinks.conftest import PARTITIONS, EnrichedWeek
from tests.sinks.truth import assert_store_matches_truth

pytestmark = pytest.mark.broker


def produce(bootstrap: str, topic: str, frames: list[bytes]) -> None:
    """Frame i to partition i % 4, in order."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "message.max.bytes": 8_000_000}
    )
    for i, frame in enumerate(frames):
        producer.produce(topic, frame, partition=i % PARTITIONS)
    assert producer.flush(30) == 0


def health_record(packets_seen: int) -> dict[str, Any]:
    return {
        "sensor_id": "sim-0",
        "ts": datetime(2022, 4, 1, 0, 0, packets_seen % 60, tzinfo=UTC),
        "started": datetime(2022, 4, 1, tzinfo=UTC),
        "source": "simulate:2022Q2",
        "packets_seen": packets_seen,
        "packets_dropped_kernel": 0,
        "packets_malformed": {},
        "packets_out_of_prefix": 0,
        "packets_sent": packets_seen,
        "batches_sent": 1,
        "send_failed": 0,
        "monitored_addresses": 256,
        "prefixes": ["198.51.100.0/24"],
        "version": "0.1.0",
    }


def sink_settings(tmp_path: Path, **over: Any) -> SinkSettings:
    values: dict[str, Any] = {
        "dsn": f"chdb://{tmp_path / 'store'}",
        "group_id": f"sink-{tmp_path.name}",
        "batch_rows": 4000,
        "linger": 0.3,
        "max_backoff": 0.5,
    }
    values.update(over)
    return SinkSettings(**values)


def run_once(
    store: Store, settings: SinkSettings, bootstrap: str, topics: TopicNames, sink_cls: type[Sink] = Sink
) -> SinkStats:
    sink = sink_cls(store, settings, KafkaSettings(bootstrap=bootstrap, partitions=PARTITIONS), topics)
    return sink.run(exit_when_idle=4.0)


def open_store(settings: SinkSettings) -> Store:
    store = Store.open(settings.dsn)
    store.migrate()
    return store


def test_sink_stores_a_week_exactly_with_sensor_health(
    kafka_bootstrap: str, topic_names: TopicNames, tmp_path: Path, week: EnrichedWeek
) -> None:
    produce(kafka_bootstrap, topic_names.enriched, week.frames)
    codec = Codec()
    produce(
        kafka_bootstrap,
        topic_names.sensors,
        [codec.encode("darkscope.SensorHealth", health_record(n)) for n in (100, 200, 300)],
    )
    settings = sink_settings(tmp_path)
    with open_store(settings) as store:
        stats = run_once(store, settings, kafka_bootstrap, topic_names)
        assert stats.rows == week.packets and stats.dead == 0 and stats.health == 3
        assert stats.inserts < len(week.frames)  # batches of a partition are joined
        assert_store_matches_truth(store, week.truth)
        latest = store.query(
            "SELECT sensor, max(packets_seen), any(monitored_addresses) FROM sensor_health GROUP BY sensor"
        ).result_rows
        assert latest == [("sim-0", 300, 256)]


class _Crash(BaseException):
    """Stands for the process dying: nothing after it runs (no commit)."""


class CrashAfterSecondInsert(Sink):
    """A sink that dies right after its second insert, before committing it."""

    inserted = 0

    def _insert(self, group: Any, token: str) -> None:
        super()._insert(group, token)
        type(self).inserted += 1
        if type(self).inserted == 2:
            raise _Crash(token)


def test_crash_between_insert_and_commit_is_replayed_without_double_counting(
    kafka_bootstrap: str, topic_names: TopicNames, tmp_path: Path, week: EnrichedWeek
) -> None:
    produce(kafka_bootstrap, topic_names.enriched, week.frames)
    settings = sink_settings(tmp_path)
    with open_store(settings) as store:
        with pytest.raises(_Crash) as crash:
            run_once(store, settings, kafka_bootstrap, topic_names, CrashAfterSecondInsert)
        token = str(crash.value)
        # The crashed group's intent is what the partition has committed.
        partition = int(token.split(":")[1])
        first, last = token.rsplit(":", 1)[1].split("-")
        from confluent_kafka import Consumer, TopicPartition

        probe = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": settings.group_id})
        [committed] = probe.committed([TopicPartition(topic_names.enriched, partition)], timeout=10)
        probe.close()
        assert (committed.offset, committed.metadata) == (int(first), f"{INTENT_PREFIX}{first}-{last}")

        stats = run_once(store, settings, kafka_bootstrap, topic_names)
        assert stats.replayed_groups == 1
        assert_store_matches_truth(store, week.truth)


def test_unreadable_enriched_messages_go_to_the_dead_letter_topic(
    kafka_bootstrap: str, topic_names: TopicNames, tmp_path: Path, week: EnrichedWeek
) -> None:
    codec = Codec()
    short = dict(week.records[0])
    short["fp_flags"] = short["fp_flags"][:-2]  # one packet short: the columns disagree
    bad_index = dict(week.records[1])
    bad_index["regions"], bad_index["region_names"] = ["ZZ"], ["Unknown"]
    wrong_record = codec.encode_batch(week.batches[2].batch)  # a PacketBatch, not an EnrichedBatch
    bad = [
        b"\x00not avro at all",
        codec.encode("darkscope.EnrichedBatch", short),
        codec.encode("darkscope.EnrichedBatch", bad_index),
        wrong_record,
    ]
    good = week.frames[3:9]
    # Interleave: partition i % 4 gets a bad message among good ones.
    produce(kafka_bootstrap, topic_names.enriched, bad + good)
    settings = sink_settings(tmp_path)
    with open_store(settings) as store:
        stats = run_once(store, settings, kafka_bootstrap, topic_names)
        assert stats.dead == 4
        want = sum(len(e.batch) for e in week.batches[3:9])
        assert store.query("SELECT count() FROM packets").result_rows == [(want,)]
    dead = [codec.decode(m.value() or b"").record for m in read_all(kafka_bootstrap, topic_names.deadletter)]
    assert sorted(d["payload"] for d in dead) == sorted(bad)
    assert {d["stage"] for d in dead} == {"sink"}
    assert {d["source_topic"] for d in dead} == {topic_names.enriched}
    assert {d["reason"] for d in dead} == {"bad_record"}
    assert all(
        "EnrichedBatch" in d["error"]
        or "column" in d["error"]
        or "index" in d["error"]
        or "frame" in d["error"]
        for d in dead
    )


def test_inserts_are_retried_until_clickhouse_takes_them(
    kafka_bootstrap: str, topic_names: TopicNames, tmp_path: Path, week: EnrichedWeek
) -> None:
    produce(kafka_bootstrap, topic_names.enriched, week.frames[:8])
    settings = sink_settings(tmp_path)
    with open_store(settings) as store:
        # The raw table is gone: every insert fails until it is back.
        store.client.command("DROP TABLE packets")

        def restore() -> None:
            time.sleep(2.0)
            with Store.open(settings.dsn) as other:
                other.client.command("DELETE FROM schema_migrations WHERE version = 1")
                other.migrate()

        sink = Sink(
            store, settings, KafkaSettings(bootstrap=kafka_bootstrap, partitions=PARTITIONS), topic_names
        )
        fixer = threading.Thread(target=restore)
        fixer.start()
        guard = threading.Timer(90, sink.stop)  # never hang the suite if the fix fails
        guard.start()
        try:
            stats = sink.run(exit_when_idle=4.0)
        finally:
            guard.cancel()
            fixer.join()
        assert stats.retries >= 1
        want = sum(len(e.batch) for e in week.batches[:8])
        assert stats.rows == want
        assert store.query("SELECT count() FROM packets").result_rows == [(want,)]
