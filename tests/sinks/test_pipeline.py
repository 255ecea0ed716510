"""A simulated week through a real worker and a real `darkscope sink` process into chDB,
with the sink killed (SIGKILL) mid-stream and restarted: the store equals the ground truth."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from core.settings import KafkaSettings, SensorSettings, TopicNames
from core.topics import watermarks
from producers.run import publish_simulation
from sinks.store import Store
from tests.sinks.truth import assert_store_matches_truth
from tests.streams.harness import REPO, enriched_packets, wait_for, workers

pytestmark = pytest.mark.broker


def _sink_env(bootstrap: str, topics: TopicNames, dsn: str, group: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DARKSCOPE_BOOTSTRAP": bootstrap,
        "DARKSCOPE_PARTITIONS": "4",
        "DARKSCOPE_SINK_DSN": dsn,
        "DARKSCOPE_SINK_GROUP_ID": group,
        "DARKSCOPE_SINK_BATCH_ROWS": "1000",  # about two enriched batches per insert
        "DARKSCOPE_SINK_LINGER": "0.2",
    }
    for field in TopicNames.model_fields:
        env[f"DARKSCOPE_TOPIC_{field.upper()}"] = getattr(topics, field)
    return env


def _committed(bootstrap: str, group: str, topic: str) -> int:
    """Messages of ``topic`` the group has committed (sum over partitions)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = [TopicPartition(topic, p) for p in watermarks(bootstrap, topic)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
    finally:
        consumer.close()


def _start_sink(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "darkscope", "-v", "sink", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )


def test_week_through_worker_and_sink_killed_midstream_equals_ground_truth(
    kafka_bootstrap: str, topic_names: TopicNames, tmp_path: Path
) -> None:
    with workers(1, kafka_bootstrap, topic_names, tmp_path):
        publish_simulation(
            SensorSettings(sensor_id="sim-week", prefixes=["198.51.100.0/24"], batch_size=500),
            KafkaSettings(bootstrap=kafka_bootstrap),
            topic_names,
            quarter="2022Q2",
            packets_per_day=2500,
            days=7,
            flat=False,
            seed=3,
            truth_path=tmp_path / "truth.json",
        )
        truth: dict[str, Any] = json.loads((tmp_path / "truth.json").read_text())
        wait_for(
            "the week to be enriched",
            lambda: enriched_packets(kafka_bootstrap, topic_names.enriched) >= truth["totals"]["packets"],
            240,
            tmp_path,
        )
    total = sum(hi for _, hi in watermarks(kafka_bootstrap, topic_names.enriched).values())
    dsn = f"chdb://{tmp_path / 'store'}"
    group = f"sink-{tmp_path.name}"
    env = _sink_env(kafka_bootstrap, topic_names, dsn, group)
    log = tmp_path / "sink.log"

    first = _start_sink(env, log)
    try:
        deadline = time.monotonic() + 120
        while _committed(kafka_bootstrap, group, topic_names.enriched) == 0:
            assert first.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    at_kill = _committed(kafka_bootstrap, group, topic_names.enriched)
    assert 0 < at_kill < total, "the sink should die mid-stream"

    second = _start_sink(env, log, "--exit-when-idle", "5")
    assert second.wait(180) == 0, log.read_text()[-3000:]
    assert _committed(kafka_bootstrap, group, topic_names.enriched) == total
    output = log.read_text()
    assert "stored" in output.splitlines()[-1]

    with Store.open(dsn) as store:
        assert_store_matches_truth(store, truth)
        health = store.query(
            "SELECT max(packets_seen), any(monitored_addresses) FROM sensor_health WHERE sensor = 'sim-week'"
        ).result_rows
        assert health == [(truth["totals"]["packets"], 256)]
