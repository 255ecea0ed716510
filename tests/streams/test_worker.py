"""Real worker processes on the real broker: a simulated day in, enrichment, exact windowed
counts, alerts and dead letters out."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.publisher import Publisher
from core.settings import KafkaSettings, SensorSettings, TopicNames
from producers.run import publish_simulation
from schemas.batch import PacketBatch
from schemas.codec import Codec
from schemas.fingerprints import Fingerprint
from streams.geo import GeoResolver
from tests.kafka_helpers import fresh_topic_names, read_all
from tests.streams.harness import (
    alerts,
    enriched_packets,
    hourly_totals,
    settled_windows,
    wait_for,
    windows,
    workers,
)

pytestmark = pytest.mark.broker

DAY = 1_648_771_200  # 2022-04-01T00:00:00Z
SURGE_HOUR = 15


def _surge_batch(n: int = 3000) -> PacketBatch:
    """SYNs to 3389/tcp from 100 sources in one hour, matching no fingerprint."""
    rng = np.random.default_rng(9)
    b = PacketBatch.zeros("surge-sensor", 0, n)
    c = b.columns
    c["ts"][:] = np.sort((DAY + SURGE_HOUR * 3600 + rng.integers(0, 3600, n)) * 10**9)
    c["ip_version"][:] = 4
    c["src"][:] = rng.choice(rng.integers(0x08000000, 0x40000000, 100, dtype=np.uint32), n)
    c["dst"][:] = 0xC6336400 + rng.integers(0, 256, n, dtype=np.uint32)
    c["protocol"][:] = 6
    c["tcp_flags"][:] = 2
    c["dport"][:] = 3389
    c["sport"][:] = rng.integers(1024, 65535, n, dtype=np.uint16)
    c["tcp_seq"][:] = rng.integers(0, 2**32, n, dtype=np.uint32)
    c["tcp_window"][:] = 29200
    c["ttl"][:] = 50
    c["ip_id"][:] = rng.integers(0, 54000, n, dtype=np.uint16)
    return b


def _publish_day(bootstrap: str, topics: TopicNames, tmp: Path, flat: bool) -> dict[str, Any]:
    settings = SensorSettings(sensor_id="sim-day", prefixes=["198.51.100.0/24"], batch_size=4000)
    publish_simulation(
        settings,
        KafkaSettings(bootstrap=bootstrap),
        topics,
        quarter="2022Q2",
        packets_per_day=30_000,
        days=1,
        flat=flat,
        seed=11,
        truth_path=tmp / "truth.json",
    )
    truth: dict[str, Any] = json.loads((tmp / "truth.json").read_text())
    return truth


def _drained(bootstrap: str, topics: TopicNames, app_id: str, expected: int) -> bool:
    enriched = enriched_packets(bootstrap, topics.enriched)
    sensor_hours = [k for k in windows(bootstrap, app_id) if k[0] == "sensor" and k[1] == "1h"]
    return enriched >= expected and len(sensor_hours) >= 24


def _sum_fp(wins: dict, name: str) -> int:
    return sum(n for k, n in hourly_totals(wins, "fp_region").items() if k.startswith(f"{name}/"))


@pytest.fixture(scope="module")
def story_day(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One worker fed a simulated day, a planted 3389/tcp surge and a garbage message.

    Read-only and slow to build (a worker process, a day through it): built once for the
    three tests that read it; its topics stay until they are done."""
    tmp_path = tmp_path_factory.mktemp("story_day")
    with fresh_topic_names(kafka_bootstrap, "story_day") as topic_names:
        with workers(1, kafka_bootstrap, topic_names, tmp_path) as app_id:
            truth = _publish_day(kafka_bootstrap, topic_names, tmp_path, flat=False)
            surge = _surge_batch()
            pub = Publisher(kafka_bootstrap)
            pub.send(topic_names.packets, Codec().encode_batch(surge), len(surge))
            pub.send(topic_names.packets, b"\x00garbage, not Avro")
            pub.flush()
            expected = truth["totals"]["packets"] + len(surge)
            wait_for(
                "the day to be enriched and its windows closed",
                lambda: _drained(kafka_bootstrap, topic_names, app_id, expected),
                240,
                tmp_path,
            )
            day = {
                "truth": truth,
                "surge": surge,
                "app_id": app_id,
                "topics": topic_names,
                "wins": settled_windows(kafka_bootstrap, app_id, tmp_path),
                "alerts": alerts(kafka_bootstrap, topic_names.alerts),
            }
        yield day


def test_story_day_through_one_worker(kafka_bootstrap: str, story_day: dict[str, Any]) -> None:
    truth, surge, wins = story_day["truth"], story_day["surge"], story_day["wins"]
    totals = truth["totals"]

    # Windowed counts equal the ground truth (plus the planted surge batch).
    sensors = hourly_totals(wins, "sensor")
    assert sensors == {"sim-day": totals["packets"], "surge-sensor": len(surge)}
    minute_total = sum(
        p for (k, size, _), c in wins.items() if k == "sensor" and size == "1m" for p, _ in c.values()
    )
    assert minute_total == totals["packets"] + len(surge)
    ports = hourly_totals(wins, "port")
    for port, n in totals["by_port"].items():
        if port != "other":
            assert ports.get(port, 0) == n + (len(surge) if port == "3389/tcp" else 0), port
    with GeoResolver.default() as geo:
        surge_regions: dict[str, int] = {}
        for src in surge["src"].tolist():
            r = geo.lookup_region(str(ipaddress.IPv4Address(src)))
            surge_regions[r] = surge_regions.get(r, 0) + 1
    regions = hourly_totals(wins, "region")
    for region, n in totals["by_region"].items():
        assert regions.get(region, 0) == n + surge_regions.pop(region, 0), region
    assert {r: n for r, n in regions.items() if r not in totals["by_region"]} == surge_regions

    # Every Mirai, backscatter, ZMap, Masscan, Nmap packet is flagged, and nothing else.
    fps = totals["by_fingerprint"]
    for name, key in (
        ("mirai", "mirai"),
        ("backscatter", "backscatter"),
        ("zmap", "zmap"),
        ("masscan", "masscan"),
        ("nmap_syn", "nmap"),
    ):
        assert _sum_fp(wins, name) == fps[key], name
    mirai_regions = {
        k.split("/")[1]: n for k, n in hourly_totals(wins, "fp_region").items() if k.startswith("mirai/")
    }
    assert mirai_regions == totals["mirai_by_region"]


def test_story_day_scanners_identified_and_enriched_records_versioned(
    kafka_bootstrap: str, story_day: dict[str, Any]
) -> None:
    truth, topics = story_day["truth"], story_day["topics"]
    codec = Codec()
    confirmed: dict[str, set[str]] = {"zmap": set(), "masscan": set()}
    versions = set()
    for msg in read_all(kafka_bootstrap, topics.enriched):
        rec = codec.decode(msg.value() or b"").record
        versions.add(rec["geo_db_version"])
        batch = codec.batch_from_record(rec["packets"])
        verdict = np.frombuffer(rec["fp_verdict"], dtype="<u2")
        for name, bit in (("zmap", Fingerprint.ZMAP), ("masscan", Fingerprint.MASSCAN)):
            srcs = batch["src"][(verdict & np.uint16(bit)) != 0]
            confirmed[name] |= {str(ipaddress.IPv4Address(int(s))) for s in np.unique(srcs)}
    assert confirmed["zmap"] == set(truth["sources"]["zmap"])
    assert confirmed["masscan"] == set(truth["sources"]["masscan"])
    assert versions and all(v.startswith("DBIP-City-Lite") for v in versions)


def test_story_day_planted_surge_alerts_and_garbage_is_dead_lettered(
    kafka_bootstrap: str, story_day: dict[str, Any]
) -> None:
    topics = story_day["topics"]
    surges = [a for a in story_day["alerts"] if a["kind"].startswith("surge_")]
    port = [a for a in surges if a["dimension"] == "port"]
    assert [(a["key"], a["window_start"].timestamp()) for a in port] == [
        ("3389/tcp", DAY + SURGE_HOUR * 3600)
    ]
    assert port[0]["observed"] >= 3000 and port[0]["score"] >= 6
    # Regions may surge too, but only in the hour of the planted surge (its sources' regions).
    assert {a["window_start"].timestamp() for a in surges} == {DAY + SURGE_HOUR * 3600}
    dead = [Codec().decode(m.value() or b"").record for m in read_all(kafka_bootstrap, topics.deadletter)]
    assert len(dead) == 1
    assert dead[0]["reason"] == "undecodable" and dead[0]["source_topic"] == topics.packets
    assert dead[0]["payload"] == b"\x00garbage, not Avro"


def test_flat_day_raises_no_surge(kafka_bootstrap: str, topic_names: TopicNames, tmp_path: Path) -> None:
    with workers(1, kafka_bootstrap, topic_names, tmp_path) as app_id:
        truth = _publish_day(kafka_bootstrap, topic_names, tmp_path, flat=True)
        wait_for(
            "the flat day",
            lambda: _drained(kafka_bootstrap, topic_names, app_id, truth["totals"]["packets"]),
            240,
            tmp_path,
        )
        raised = alerts(kafka_bootstrap, topic_names.alerts)
    assert [
        a for a in raised if a["kind"] in ("surge_packets", "surge_sources", "top_new_port", "mirai_burst")
    ] == []


def test_two_workers_on_four_partitions_count_exactly(
    kafka_bootstrap: str, topic_names: TopicNames, tmp_path: Path
) -> None:
    # A short session timeout (as in test_rebalance): the group settles in seconds, not after
    # the default heartbeat of 20 s.
    with workers(2, kafka_bootstrap, topic_names, tmp_path, DARKSCOPE_WORKER_SESSION_TIMEOUT="8") as app_id:
        # Both workers join before data flows (test_rebalance moves partitions mid-stream).
        wait_for(
            "both workers ready",
            lambda: all("Ready" in p.read_text(errors="replace") for p in tmp_path.glob("worker*.log")),
            120,
            tmp_path,
        )
        time.sleep(5)
        truth = _publish_day(kafka_bootstrap, topic_names, tmp_path, flat=False)
        wait_for(
            "two workers",
            lambda: _drained(kafka_bootstrap, topic_names, app_id, truth["totals"]["packets"]),
            240,
            tmp_path,
        )
        wins = settled_windows(kafka_bootstrap, app_id, tmp_path)
    logs = [p.read_text() for p in sorted(tmp_path.glob("worker*.log"))]
    # Both count: each owns counts partitions.
    assert all("took over counts partition" in log for log in logs), "both workers should count"
    assert hourly_totals(wins, "sensor") == {"sim-day": truth["totals"]["packets"]}
    assert hourly_totals(wins, "region") == truth["totals"]["by_region"]
    assert _sum_fp(wins, "mirai") == truth["totals"]["by_fingerprint"]["mirai"]
