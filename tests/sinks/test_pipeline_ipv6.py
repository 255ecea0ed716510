"""IPv6 backscatter end to end: a simulated stretch at a sensor that monitors an IPv6 prefix,
published by the sensor, through a real worker and a real `darkscope sink` into chDB; its IPv6
victims are in the store, in the report's DoS episodes and on the alerts topic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.settings import KafkaSettings, SensorSettings, TopicNames
from producers.run import publish_simulation
from producers.sim.ipv6 import VICTIMS
from reports.queries import load_episodes
from reports.victims import victims
from sinks.store import Store
from tests.sinks.test_pipeline import _sink_env, _start_sink
from tests.streams.harness import alerts, enriched_packets, wait_for, workers

pytestmark = pytest.mark.broker

# A /120: a sensor reports its monitored addresses as an Avro long (a /64 would overflow it).
PREFIXES = ["198.51.100.0/24", "2001:db8:dd::/120"]


def _episode_keys(bootstrap: str, topic: str) -> set[str]:
    return {a["key"] for a in alerts(bootstrap, topic) if a["kind"] == "backscatter_episode"}


def test_simulated_ipv6_backscatter_shows_ipv6_victims_in_chdb_the_report_and_the_alerts(
    kafka_bootstrap: str, topic_names: TopicNames, tmp_path: Path
) -> None:
    with workers(1, kafka_bootstrap, topic_names, tmp_path):
        publish_simulation(
            SensorSettings(sensor_id="sim-v6", prefixes=PREFIXES, batch_size=500),
            KafkaSettings(bootstrap=kafka_bootstrap),
            topic_names,
            quarter="2022Q2",
            packets_per_day=2000,
            days=3,
            flat=False,
            seed=4,
            truth_path=tmp_path / "truth.json",
        )
        truth: dict[str, Any] = json.loads((tmp_path / "truth.json").read_text())
        total = truth["totals"]["packets"] + truth["ipv6"]["packets"]
        wait_for(
            "the stretch to be enriched",
            lambda: enriched_packets(kafka_bootstrap, topic_names.enriched) >= total,
            240,
            tmp_path,
        )
        wait_for(
            "a backscatter_episode alert on every IPv6 victim",
            lambda: set(VICTIMS) <= _episode_keys(kafka_bootstrap, topic_names.alerts),
            180,
            tmp_path,
            seen=lambda: str(sorted(_episode_keys(kafka_bootstrap, topic_names.alerts))),
        )
    dsn = f"chdb://{tmp_path / 'store'}"
    log = tmp_path / "sink.log"
    sink = _start_sink(
        _sink_env(kafka_bootstrap, topic_names, dsn, f"sink-{tmp_path.name}"), log, "--exit-when-idle", "5"
    )
    assert sink.wait(180) == 0, log.read_text()[-3000:]

    planted = {v["victim"]: v["packets"] for v in truth["backscatter"]["victims"] if ":" in v["victim"]}
    assert sorted(planted) == sorted(VICTIMS)
    with Store.open(dsn) as store:
        assert store.query("SELECT count() FROM packets").result_rows == [(total,)]
        stored = store.query(
            "SELECT toString(victim), count() FROM packets WHERE ip_version = 6 "
            "AND bitAnd(fp_flags, 8) != 0 GROUP BY victim"
        ).result_rows
        assert dict(stored) == planted
        listed = {v.victim: v.packets for v in victims(load_episodes(store, "2022Q2", "sim-v6"))}
    assert {v: n for v, n in listed.items() if ":" in v} == planted
