"""`darkscope alerts tail` and kcat on alerts that the detector raised, through the real broker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from confluent_kafka import Producer

from schemas.codec import Codec
from streams.alert_reader import format_alert
from tests.sinks.conftest import health_record
from tests.streams.harness import REPO
from tests.streams.test_alerts import episode_records, hours, minutes, poisson, run


def _raised() -> list[dict]:
    """Alerts of a planted telnet surge, as the detector raises them."""
    rng = np.random.default_rng(4)
    telnet = poisson(rng, 500, 24)
    telnet[15] = 6000
    alerts = run(hours({"23/tcp": telnet, "80/tcp": poisson(rng, 300, 24)}))
    assert alerts
    return alerts


def test_format_alert_is_one_line_with_window_kind_key_and_evidence() -> None:
    a = next(a for a in _raised() if a["kind"] == "surge_packets")
    line = format_alert(a)
    assert "\n" not in line
    assert line.startswith("2022-04-01 15:00Z")
    assert "surge_packets" in line and "23/tcp" in line and "observed=6000" in line
    assert a["message"] in line


def test_an_episodes_lines_name_its_state() -> None:
    records = episode_records(run(minutes([50, 50, 50, 0])))
    lines = [format_alert(a) for a in records]
    assert "backscatter_episode open" in lines[0] and "backscatter_episode close" in lines[1]
    assert all(a["message"] in line for a, line in zip(records, lines, strict=True))


@pytest.mark.broker
def test_alerts_tail_prints_every_alert_and_reports_garbage(kafka_bootstrap: str, topic: str) -> None:
    codec = Codec()
    alerts = _raised()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for a in alerts:
        producer.produce(topic, codec.encode("darkscope.Alert", a), key=a["key"].encode(), partition=0)
    producer.produce(topic, b"not an alert", partition=0)
    # Another record of the project's, not an alert.
    producer.produce(topic, codec.encode("darkscope.SensorHealth", health_record(5)), partition=0)
    producer.flush(30)

    env = {**os.environ, "DARKSCOPE_BOOTSTRAP": kafka_bootstrap, "DARKSCOPE_TOPIC_ALERTS": topic}
    out = subprocess.run(
        [sys.executable, "-m", "darkscope", "alerts", "tail", "--from-beginning", "--timeout", "3"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.splitlines()
    assert out[: len(alerts)] == [
        format_alert(codec.decode(codec.encode("darkscope.Alert", a)).record) for a in alerts
    ]
    assert len(out) == len(alerts) + 2
    assert out[-2].startswith(f"# undecodable message at {topic}[0]@{len(alerts)}")
    assert out[-1].startswith(f"# undecodable message at {topic}[0]@{len(alerts) + 1}")
    assert "SensorHealth is not an Alert record" in out[-1]


@pytest.mark.broker
@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is installed by make test's Debian step")
def test_kcat_reads_the_alerts_as_single_object_avro(kafka_bootstrap: str, topic: str) -> None:
    codec = Codec()
    alerts = _raised()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for a in alerts:
        producer.produce(topic, codec.encode("darkscope.Alert", a), partition=0)
    producer.flush(30)
    raw = subprocess.run(
        ["kcat", "-C", "-b", kafka_bootstrap, "-t", topic, "-p", "0", "-e", "-q", "-f", "%S %s\\n"],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    values = []  # "<size> <value>\n" per message: Avro bytes may hold newlines, the size says
    while raw:
        size, rest = raw.split(b" ", 1)
        values.append(rest[: int(size)])
        raw = rest[int(size) + 1 :]
    assert len(values) == len(alerts)
    for value, a in zip(values, alerts, strict=True):
        assert value[:2] == b"\xc3\x01"  # Avro single-object encoding
        assert codec.decode(value).record["alert_id"] == a["alert_id"]
