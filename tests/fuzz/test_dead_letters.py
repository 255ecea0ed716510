"""Garbage on every topic darkscope consumes lands in ``darkscope.deadletter`` with its reason,
and the pipeline goes on: a real worker process and a real sink on the real broker.

The consumers and what they reject: the worker's enrich agent (``packets``), count agent
(``counts``) and merge agent (``windows``), the sink (``enriched`` and ``sensors``). Each gets
bytes that are not Avro, a frame with a fingerprint no schema has, a frame of its own schema
cut short, and a valid frame of another record; then a simulated day follows the garbage,
and every packet of it must be enriched, counted and stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from core.errors import CodecError
from core.settings import KafkaSettings, SensorSettings, TopicNames
from fuzz.seeds import messages
from producers.run import publish_simulation
from schemas.codec import MAGIC, Codec
from schemas.names import (
    ALERT,
    ENRICHED_BATCH,
    PACKET_BATCH,
    PARTIAL_COUNTS,
    SENSOR_HEALTH,
    WINDOW_COUNTS,
)
from sinks.sink import Sink
from sinks.store import Store
from tests.kafka_helpers import read_all
from tests.sinks.conftest import sink_settings
from tests.streams.harness import hourly_totals, settled_windows, wait_for, windows, workers

pytestmark = pytest.mark.broker

PARTITIONS = 4
UNKNOWN_FP = MAGIC + bytes.fromhex("0123456789abcdef") + b"\x02\x04"


def _garbage(own: str, other: str) -> list[tuple[bytes, str]]:
    """(payload, reason it must be dead-lettered with) for a topic whose record is ``own``."""
    frame = messages()[own][0]
    return [
        (b"\x00garbage, not Avro", "undecodable"),
        (UNKNOWN_FP, "unknown_schema"),
        (frame[: len(frame) // 2], "undecodable"),
        (messages()[other][0], "undecodable"),
    ]


def _produce(bootstrap: str, topic: str, payloads: list[bytes]) -> None:
    """Payload i to partition i % 4 (every partition of the topic gets garbage)."""
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 8_000_000})
    for i, payload in enumerate(payloads):
        producer.produce(topic, payload, key=b"k%d" % i, partition=i % PARTITIONS)
    assert producer.flush(30) == 0


def _enriched_packets(bootstrap: str, topic: str) -> int:
    """Packets in the enriched topic's readable batches (the garbage sent to it is not)."""
    codec, total = Codec(), 0
    for m in read_all(bootstrap, topic):
        try:
            msg = codec.decode(m.value() or b"")
        except CodecError:
            continue
        if msg.name == ENRICHED_BATCH:
            total += int(msg.record["packets"]["count"])
    return total


def _publish_day(bootstrap: str, topics: TopicNames, tmp: Path) -> dict[str, Any]:
    settings = SensorSettings(sensor_id="sim-day", prefixes=["198.51.100.0/24"], batch_size=4000)
    publish_simulation(
        settings,
        KafkaSettings(bootstrap=bootstrap, partitions=PARTITIONS),
        topics,
        quarter="2022Q2",
        packets_per_day=12_000,
        days=1,
        flat=True,
        seed=4,
        truth_path=tmp / "truth.json",
    )
    truth: dict[str, Any] = json.loads((tmp / "truth.json").read_text())
    return truth


def test_garbage_on_every_consumed_topic_is_dead_lettered_with_its_reason_and_the_pipeline_goes_on(
    kafka_bootstrap: str, topic_names: TopicNames, tmp_path: Path
) -> None:
    topics = topic_names
    sent = {
        topics.packets: ("worker", _garbage(PACKET_BATCH, ALERT)),
        topics.counts: ("worker", _garbage(PARTIAL_COUNTS, PACKET_BATCH)),
        topics.windows: ("worker", _garbage(WINDOW_COUNTS, PARTIAL_COUNTS)),
        topics.enriched: ("sink", _garbage(ENRICHED_BATCH, PACKET_BATCH)),
        topics.sensors: ("sink", _garbage(SENSOR_HEALTH, ALERT)),
    }
    for topic, (_, garbage) in sent.items():
        _produce(kafka_bootstrap, topic, [payload for payload, _ in garbage])

    with workers(1, kafka_bootstrap, topics, tmp_path) as app_id:
        truth = _publish_day(kafka_bootstrap, topics, tmp_path)
        total = truth["totals"]["packets"]
        wait_for(
            "the day enriched and its 24 sensor hours closed",
            lambda: (
                _enriched_packets(kafka_bootstrap, topics.enriched) >= total
                and sum(1 for k in windows(kafka_bootstrap, app_id) if k[:2] == ("sensor", "1h")) >= 24
            ),
            240,
            tmp_path,
        )
        wins = settled_windows(kafka_bootstrap, app_id, tmp_path)

    settings = sink_settings(tmp_path)
    store = Store.open(settings.dsn)
    try:
        store.migrate()
        kafka = KafkaSettings(bootstrap=kafka_bootstrap, partitions=PARTITIONS)
        stats = Sink(store, settings, kafka, topics).run(exit_when_idle=4.0)
        stored = store.query("SELECT count() FROM packets").result_rows
    finally:
        store.close()

    # The pipeline went on: every packet of the day enriched, counted and stored.
    assert _enriched_packets(kafka_bootstrap, topics.enriched) == total
    assert hourly_totals(wins, "sensor") == {"sim-day": total}
    assert stored == [(total,)]
    assert stats.dead == len(sent[topics.enriched][1]) + len(sent[topics.sensors][1])

    # Every garbage message is in the dead-letter topic once, with its reason, stage and origin.
    codec = Codec()
    dead = [codec.decode(m.value() or b"").record for m in read_all(kafka_bootstrap, topics.deadletter)]
    got = sorted((d["source_topic"], d["payload"], d["reason"], d["stage"]) for d in dead)
    want = sorted(
        (topic, payload, reason, stage)
        for topic, (stage, garbage) in sent.items()
        for payload, reason in garbage
    )
    assert got == want
    assert all(d["error"] for d in dead)
    assert all(d["key"] is not None and d["key"].startswith(b"k") for d in dead)
