"""The sink on the real broker and real chDB: what proves the confluent-kafka consumer and the
dead-letter Publisher do what the loop's in-memory tests (test_loop.py) assume: an exact load,
commit metadata that survives a crash and is replayed, dead letters on the real topic."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from core.settings import KafkaSettings, SinkSettings, TopicNames
from core.topics import watermarks
from schemas.codec import Codec
from schemas.names import SENSOR_HEALTH
from sinks.clients import SinkStore
from sinks.intents import INTENT_PREFIX, parse_intent
from sinks.loop import SinkStats
from sinks.sink import Sink
from sinks.store import Store
from tests.kafka_helpers import read_all
from tests.sinks.conftest import PARTITIONS, EnrichedWeek, health_record, sink_settings
from tests.sinks.memory import Crash, Journal, RecordingStore
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


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, tuple[int, str]]:
    """Partition -> (committed offset, commit metadata) of a consumer group."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return {tp.partition: (tp.offset, tp.metadata or "") for tp in probe.committed(parts, timeout=10)}
    finally:
        probe.close()


def run_once(store: SinkStore, settings: SinkSettings, bootstrap: str, topics: TopicNames) -> SinkStats:
    sink = Sink(store, settings, KafkaSettings(bootstrap=bootstrap, partitions=PARTITIONS), topics)
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
        [codec.encode(SENSOR_HEALTH, health_record(n)) for n in (100, 200, 300)],
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
    # Every offset committed with empty metadata: the intents are gone once their groups are stored.
    ends = {p: (hi, "") for p, (_, hi) in watermarks(kafka_bootstrap, topic_names.enriched).items()}
    assert committed_offsets(kafka_bootstrap, settings.group_id, topic_names.enriched) == ends


def test_crash_between_insert_and_commit_is_replayed_without_double_counting(
    kafka_bootstrap: str, topic_names: TopicNames, tmp_path: Path, week: EnrichedWeek
) -> None:
    produce(kafka_bootstrap, topic_names.enriched, week.frames)
    settings = sink_settings(tmp_path)
    with open_store(settings) as store:
        # The store dies right after its second insert, before the sink commits it.
        with pytest.raises(Crash) as crash:
            run_once(RecordingStore(store, Journal(), crash_after=2), settings, kafka_bootstrap, topic_names)
        token = str(crash.value)
        # The crashed group's intent is what the partition has committed.
        partition = int(token.split(":")[1])
        first, last = token.rsplit(":", 1)[1].split("-")
        committed = committed_offsets(kafka_bootstrap, settings.group_id, topic_names.enriched)
        assert committed[partition] == (int(first), f"{INTENT_PREFIX}{first}-{last}")
        # The group handed over after it (another partition's) may have its intent committed too.
        intents = [p for p, (offset, meta) in committed.items() if (parse_intent(meta) or (-1,))[0] == offset]
        assert 1 <= len(intents) <= 2

        stats = run_once(store, settings, kafka_bootstrap, topic_names)
        assert stats.replayed_groups == len(intents)
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
    # The reason is the error class's own (core.errors), the same word the worker uses.
    assert {d["reason"] for d in dead} == {"undecodable"}
    assert all(
        "EnrichedBatch" in d["error"]
        or "column" in d["error"]
        or "index" in d["error"]
        or "frame" in d["error"]
        for d in dead
    )
