"""The sensor through the real broker: files and simulated traffic in, decoded batches out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.settings import KafkaSettings, SensorSettings, TopicNames
from producers.run import publish_simulation, replay_files
from producers.sim.simulate import run_simulation
from schemas.codec import Codec
from tests.kafka_helpers import read_all

CODEC = Codec()


def _packets(bootstrap: str, topic: str) -> tuple[int, set[str], list[int]]:
    n, sensors, seqs = 0, set(), []
    for msg in read_all(bootstrap, topic):
        batch = CODEC.decode_packets(msg.value() or b"")
        n += len(batch)
        sensors.add(batch.sensor_id)
        seqs.append(batch.batch_seq)
    return n, sensors, seqs


@pytest.mark.broker
def test_simulated_week_on_kafka_has_exactly_the_ground_truth_count(
    kafka_bootstrap: str, topic_names: TopicNames, tmp_path: Path
) -> None:
    settings = SensorSettings(sensor_id="sim-week", prefixes=["198.51.100.0/24"], batch_size=5000)
    report, _truth = publish_simulation(
        settings,
        KafkaSettings(bootstrap=kafka_bootstrap),
        topic_names,
        quarter="2022Q2",
        packets_per_day=20_000,
        days=7,
        flat=False,
        seed=3,
        truth_path=tmp_path / "truth.json",
    )
    expected = json.loads((tmp_path / "truth.json").read_text())["totals"]["packets"]
    assert report.packets_sent == report.packets_in == expected
    assert report.out_of_prefix == 0 and report.send_failed == 0
    n, sensors, seqs = _packets(kafka_bootstrap, topic_names.packets)
    assert n == expected
    assert sensors == {"sim-week"}
    assert sorted(seqs) == list(range(len(seqs)))  # no gap, no repeat


@pytest.mark.broker
def test_replayed_files_are_filtered_to_the_monitored_prefix_and_report_health(
    kafka_bootstrap: str, topic_names: TopicNames, tmp_path: Path
) -> None:
    run = run_simulation(
        tmp_path, quarter="2022Q2", packets_per_day=5000, days=2, seed=1, prefix="198.51.100.0/24"
    )
    settings = SensorSettings(sensor_id="half", prefixes=["198.51.100.0/25"], batch_size=2000)
    reports = replay_files(
        [str(p) for p in run.captures], settings, KafkaSettings(bootstrap=kafka_bootstrap), topic_names
    )
    total_in = sum(r.packets_in for r in reports)
    assert total_in == run.packets
    inside = sum(r.packets_sent for r in reports)
    outside = sum(r.out_of_prefix for r in reports)
    assert inside + outside == run.packets and 0.3 < inside / run.packets < 0.7
    n, _, _ = _packets(kafka_bootstrap, topic_names.packets)
    assert n == inside
    for msg in read_all(kafka_bootstrap, topic_names.packets):
        batch = CODEC.decode_packets(msg.value() or b"")
        assert ((batch["dst"] >> 7) == (0xC6336400 >> 7)).all()
    health = [CODEC.decode(m.value() or b"").record for m in read_all(kafka_bootstrap, topic_names.sensors)]
    assert health, "no SensorHealth record"
    last = max(health, key=lambda h: h["ts"])
    assert last["sensor_id"] == "half" and last["monitored_addresses"] == 128
    assert last["prefixes"] == ["198.51.100.0/25"]
    assert last["packets_out_of_prefix"] + last["packets_sent"] == last["packets_seen"]


def test_bad_prefix_is_a_clear_config_error() -> None:
    from core.errors import ConfigError
    from producers.prefixes import MonitoredSpace

    with pytest.raises(ConfigError, match="bad monitored prefix"):
        MonitoredSpace(["198.51.100.1/24"])


def test_monitored_space_counts_addresses_and_matches_ipv6() -> None:
    from producers.prefixes import MonitoredSpace
    from schemas.batch import PacketBatch

    space = MonitoredSpace(["198.51.100.0/24", "2001:db8:0:8000::/49"])
    assert space.address_count == 256 + 2**79
    b = PacketBatch.zeros("s", 0, 4)
    b.columns["ip_version"][:] = [4, 4, 6, 6]
    b.columns["dst"][:2] = [0xC6336401, 0xC6336501]
    import ipaddress

    b.columns["dst6"][2] = np.frombuffer(ipaddress.IPv6Address("2001:db8:0:8000::1").packed, "V16")[0]
    b.columns["dst6"][3] = np.frombuffer(ipaddress.IPv6Address("2001:db8:0:7fff::1").packed, "V16")[0]
    assert space.contains(b).tolist() == [True, False, True, False]


@pytest.mark.broker
def test_a_batch_entirely_outside_the_prefixes_is_dropped_not_a_crash(
    kafka_bootstrap: str, topic_names: TopicNames
) -> None:
    from producers.sensor import Sensor
    from schemas.batch import PacketBatch

    outside = PacketBatch.zeros("s", 0, 5)
    outside.columns["ip_version"][:] = 4
    outside.columns["dst"][:] = 0xC0000201  # 192.0.2.1
    inside = PacketBatch.zeros("s", 1, 3)
    inside.columns["ip_version"][:] = 4
    inside.columns["dst"][:] = 0xC6336401
    sensor = Sensor(
        SensorSettings(sensor_id="s", prefixes=["198.51.100.0/24"]),
        KafkaSettings(bootstrap=kafka_bootstrap),
        topic_names,
    )
    report = sensor.run([outside, inside, outside], "test")
    assert (report.packets_in, report.out_of_prefix, report.packets_sent) == (13, 10, 3)


@pytest.mark.broker
def test_health_counts_truncated_packets_and_saturates_an_ipv6_slash_64(
    kafka_bootstrap: str, topic_names: TopicNames
) -> None:
    from producers.sensor import Sensor
    from schemas.batch import PacketBatch

    batch = PacketBatch.zeros("s", 0, 4)
    batch.columns["ip_version"][:] = 6
    batch.columns["dst6"][:] = np.frombuffer(bytes.fromhex("20010db8" + "00" * 11 + "01") * 4, dtype="V16")
    batch.columns["truncated"][:] = [0, 1, 2, 0]  # an L4 header and TCP options cut by the snaplen
    sensor = Sensor(
        SensorSettings(sensor_id="s6", prefixes=["2001:db8::/64"]),
        KafkaSettings(bootstrap=kafka_bootstrap),
        topic_names,
    )
    report = sensor.run([batch], "test")
    assert (report.packets_sent, report.truncated) == (4, 2)
    health = [CODEC.decode(m.value() or b"").record for m in read_all(kafka_bootstrap, topic_names.sensors)]
    last = max(health, key=lambda h: h["ts"])
    # 2^64 addresses do not fit the record's Avro long: the count saturates instead of crashing.
    assert last["monitored_addresses"] == 2**63 - 1
    assert last["packets_truncated"] == 2
