"""`darkscope broker up` returns once the broker serves clients: an idempotent producer gets its
id and a consumer group its coordinator at once, so the demo prints no librdkafka retries
("GETPID ... Failed to acquire idempotence PID ...: Coordinator load in progress")."""

from __future__ import annotations

import logging
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, TopicPartition

from core.broker import coordinators_ready, pid_assigned
from core.publisher import Publisher
from core.settings import KafkaSettings
from core.topics import ensure_topics
from darkscope.cli import main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("eos", "assigned"),
    [
        ({}, False),
        ({"idemp_state": "WaitTransport", "producer_id": -1}, False),
        ({"idemp_state": "RequestPID", "producer_id": -1}, False),
        ({"idemp_state": "Assigned", "producer_id": 0}, True),
        ({"idemp_state": "Assigned", "producer_id": -1}, False),
        ({"idemp_state": "DrainBump", "producer_id": 7}, False),
    ],
)
def test_pid_assigned_reads_librdkafka_statistics(eos: dict[str, Any], assigned: bool) -> None:
    assert pid_assigned(eos) is assigned


@pytest.mark.broker
def test_coordinators_ready_on_a_serving_broker(kafka_bootstrap: str) -> None:
    assert coordinators_ready(kafka_bootstrap, timeout=30)


@pytest.mark.broker
def test_a_broker_just_up_serves_an_idempotent_producer_and_a_group_without_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    port = _free_port()
    monkeypatch.setenv("DARKSCOPE_BROKER_PORT", str(port))
    monkeypatch.setenv("DARKSCOPE_BROKER_CONTROLLER_PORT", str(_free_port()))
    monkeypatch.setenv("DARKSCOPE_BROKER_DATA_DIR", str(tmp_path / "kafka"))
    runner = CliRunner()
    bootstrap = f"127.0.0.1:{port}"
    topic = f"test.ready.{uuid.uuid4().hex[:8]}"
    try:
        up = runner.invoke(main, ["broker", "up", "--no-topics"])
        assert up.exit_code == 0, up.output
        caplog.set_level(logging.INFO, logger="darkscope.kafka")
        ensure_topics(KafkaSettings(bootstrap=bootstrap), [topic], partitions=1)
        publisher = Publisher(bootstrap)
        publisher.send(topic, b"first message", packets=1)
        publisher.flush(30)
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test.ready", "log_level": 0})
        try:
            (committed,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        finally:
            consumer.close()
    finally:
        down = runner.invoke(main, ["broker", "down"])
    assert down.exit_code == 0 and "broker stopped" in down.output
    assert publisher.stats.messages_sent == 1
    assert committed.error is None
    retries = [r.getMessage() for r in caplog.records if r.name.startswith("darkscope.kafka")]
    assert retries == []
