"""The CSIRT's tables on a simulated week from two sensors, through the real broker, a real
worker and a real `darkscope sink` process into chDB: sensor groups whose views and reports add
up to the whole, ``sources_daily`` equal to the raw packets, scan events that partition every
packet, and notification lists holding every Mirai bot of the ground truth exactly once."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from core.settings import KafkaSettings, SensorSettings, TopicNames
from darkscope.cli import main
from producers.run import publish_simulation
from producers.sim.model import KINDS
from producers.sim.simulate import simulate_quarter
from reports.build import write_report
from sinks.registry import parse_registry, store_registry
from sinks.store import Store
from tests.kafka_helpers import fresh_topic_names
from tests.streams.conftest import write_mmdb
from tests.streams.harness import REPO, enriched_packets, wait_for, workers

pytestmark = pytest.mark.broker

DAYS = 7
PER_DAY = 2500
# (sensor, seed, monitored prefix): two sensors, two simulations.
SENSORS = (("tokyo-1", 3, "198.51.100.0/24"), ("paris-1", 4, "203.0.113.0/24"))
# paris-1 is registered from Apr 3 (first on half its prefix, then all of it): its Apr 1-2
# packets belong to no group, so they count under 'unregistered'.
REGISTRY = """
[[sensor]]
id = "tokyo-1"
group = "japan"
country = "JP"
prefixes = ["198.51.100.0/24"]
active_from = 2022-01-01

[[sensor]]
id = "paris-1"
group = "partners"
country = "FR"
prefixes = ["203.0.113.0/25"]
active_from = 2022-04-03
active_until = 2022-04-05

[[sensor]]
id = "paris-1"
group = "partners"
country = "FR"
prefixes = ["203.0.113.0/24"]
active_from = 2022-04-06
"""


@dataclass(frozen=True)
class Week:
    """The filled store and what was planted in it."""

    dsn: str
    packets: int
    mirai_bots: frozenset[str]


def _asn_db(tmp: Path) -> str:
    """The ASN database `darkscope` built from the npm registry if this checkout has one, else a
    tiny one of the test's own: each IPv4 /6 its own AS (64 operators)."""
    found = sorted((REPO / ".darkscope" / "asn").glob("darkscope-asn-*.mmdb"))
    if found:
        return str(found[-1])
    networks = {
        f"{i << 2}.0.0.0/6": {
            "autonomous_system_number": 64512 + i,
            "autonomous_system_organization": f"Test Operator {i}",
        }
        for i in range(64)
    }
    return str(write_mmdb(tmp / "asn.mmdb", "GeoLite2-ASN", networks))


def _mirai_bots(sensor: str, seed: int, prefix: str) -> set[str]:
    """The sources the simulator labelled Mirai, from its own generated days (its ground truth)."""
    sim = simulate_quarter(
        "2022Q2", packets_per_day=PER_DAY, seed=seed, sensor_id=sensor, prefix=[prefix], days=DAYS
    )
    bots: set[str] = set()
    for i in range(DAYS):
        day = sim.generate_day(i)
        src = day.columns["src"][day.kind == KINDS.index("mirai")]
        bots.update(str(ipaddress.IPv4Address(int(a))) for a in np.unique(src))
    return bots


def _sink(bootstrap: str, topics: TopicNames, dsn: str, tmp: Path) -> None:
    env = {
        **os.environ,
        "DARKSCOPE_BOOTSTRAP": bootstrap,
        "DARKSCOPE_PARTITIONS": "4",
        "DARKSCOPE_SINK_DSN": dsn,
        "DARKSCOPE_SINK_GROUP_ID": f"sink-{tmp.name}",
        "DARKSCOPE_SINK_LINGER": "0.2",
    }
    for field in TopicNames.model_fields:
        env[f"DARKSCOPE_TOPIC_{field.upper()}"] = getattr(topics, field)
    log = tmp / "sink.log"
    with log.open("wb") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "darkscope", "sink", "--exit-when-idle", "5"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            timeout=300,
            check=False,
        )
    assert proc.returncode == 0, log.read_text()[-3000:]


@pytest.fixture(scope="module")
def week(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Week]:
    tmp = tmp_path_factory.mktemp("csirt-week")
    extra = {"DARKSCOPE_WORKER_ASN_DB": _asn_db(tmp)}
    total = 0
    with fresh_topic_names(kafka_bootstrap, "csirt") as topics:
        with workers(1, kafka_bootstrap, topics, tmp, **extra):
            for sensor, seed, prefix in SENSORS:
                _, truth = publish_simulation(
                    SensorSettings(sensor_id=sensor, prefixes=[prefix], batch_size=500),
                    KafkaSettings(bootstrap=kafka_bootstrap),
                    topics,
                    quarter="2022Q2",
                    packets_per_day=PER_DAY,
                    days=DAYS,
                    flat=False,
                    seed=seed,
                    truth_path=None,
                )
                total += int(truth.kind_totals.sum())
            wait_for(
                "the week to be enriched",
                lambda: enriched_packets(kafka_bootstrap, topics.enriched) >= total,
                240,
                tmp,
            )
        dsn = f"chdb://{tmp / 'store'}"
        _sink(kafka_bootstrap, topics, dsn, tmp)
    with Store.open(dsn) as store:
        store_registry(store, parse_registry(REGISTRY, "test registry"), "test registry")
    bots = set().union(*(_mirai_bots(s, seed, p) for s, seed, p in SENSORS))
    yield Week(dsn, total, frozenset(bots))


def _rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with Store.open(dsn) as store:
        return [tuple(r) for r in store.query(sql).result_rows]


def test_group_views_add_up_to_the_whole_and_unregistered_days_count_apart(week: Week) -> None:
    raw = dict(_rows(week.dsn, "SELECT day, count() FROM packets GROUP BY day"))
    assert sum(raw.values()) == week.packets
    by_group: dict[str, dict[date, int]] = {}
    addresses: dict[tuple[str, date], int] = {}
    for day, group, packets, monitored in _rows(
        week.dsn, "SELECT day, sensor_group, packets, monitored_addresses FROM group_daily"
    ):
        by_group.setdefault(group, {})[day] = packets
        addresses[group, day] = monitored
    assert set(by_group) == {"japan", "partners", "unregistered"}
    for day, n in raw.items():
        assert sum(g.get(day, 0) for g in by_group.values()) == n, day
    assert sorted(by_group["unregistered"]) == [date(2022, 4, 1), date(2022, 4, 2)]
    paris_early = _rows(
        week.dsn, "SELECT count() FROM packets WHERE sensor = 'paris-1' AND day < '2022-04-03'"
    )[0][0]
    assert sum(by_group["unregistered"].values()) == paris_early
    # Monitored addresses from the registry, period by period.
    assert addresses["japan", date(2022, 4, 1)] == 256
    assert addresses["partners", date(2022, 4, 4)] == 128
    assert addresses["partners", date(2022, 4, 7)] == 256
    for view, whole in (
        ("group_daily_ports", "daily_ports"),
        ("group_daily_regions", "daily_regions"),
        ("group_daily_mirai", "daily_mirai"),
    ):
        (parts,) = _rows(week.dsn, f"SELECT sum(packets) FROM {view}")
        (total,) = _rows(week.dsn, f"SELECT sum(packets) FROM {whole}")
        assert parts == total, view


def test_per_group_reports_add_up_to_the_whole_and_the_report_names_unregistered_sensors(
    week: Week, tmp_path: Path
) -> None:
    figures: dict[str | None, dict[str, Any]] = {}
    with Store.open(week.dsn) as store:
        for group in (None, "japan", "partners", "unregistered"):
            paths = write_report(store, "2022Q2", tmp_path, sensor_group=group)
            figures[group] = json.loads(paths.json.read_text())
            if group is None:
                html = paths.html.read_text()
    whole = figures[None]
    assert whole["packets"] == week.packets
    assert sum(figures[g]["packets"] for g in ("japan", "partners", "unregistered")) == whole["packets"]
    daily = [
        sum(v)
        for v in zip(
            *(figures[g]["daily_packets"] for g in ("japan", "partners", "unregistered")), strict=True
        )
    ]
    assert daily == whole["daily_packets"]
    assert figures["japan"]["sensor_group"] == "japan"
    assert [h["sensor"] for h in figures["japan"]["health"]] == ["tokyo-1"]
    # Monitored addresses from the registry: paris-1 had 128 addresses for 3 days, then 256 for 2.
    assert figures["japan"]["health"][0]["monitored_addresses"] == 256
    assert figures["partners"]["health"][0]["monitored_addresses"] == round((3 * 128 + 2 * 256) / 5)
    (unregistered,) = whole["unregistered"]
    assert unregistered["sensor"] == "paris-1"
    assert unregistered["packets"] == figures["unregistered"]["packets"] > 0
    assert "Not in the sensor registry: paris-1" in html


def test_sources_daily_agrees_with_the_raw_packets_by_day_region_and_as(week: Week) -> None:
    for key in ("region", "asn"):
        raw = _rows(
            week.dsn,
            f"SELECT day, toString({key}), count(), uniqExact(source) FROM packets GROUP BY day, {key} "
            "ORDER BY day, 2",
        )
        rolled = _rows(
            week.dsn,
            f"SELECT day, toString({key}), sum(packets), uniqExact(source) FROM sources_daily "
            f"GROUP BY day, {key} ORDER BY day, 2",
        )
        assert rolled == raw, key
        assert len(raw) > DAYS  # several regions / ASes a day, not one bucket
    # Over the whole week (exact: a source is a row key), and per source.
    assert _rows(week.dsn, "SELECT uniqExact(source) FROM sources_daily") == _rows(
        week.dsn, "SELECT uniqExact(source) FROM packets"
    )
    per_source = (
        "SELECT toString(source), sum(packets), min(first_seen), max(last_seen), groupBitOr(fp_verdict), "
        "uniqExactMerge(ports) FROM sources_daily GROUP BY source ORDER BY 1"
    )
    raw_source = (
        "SELECT toString(source), count(), min(ts), max(ts), groupBitOr(fp_verdict), "
        "uniqExact(protocol, dport) FROM packets GROUP BY source ORDER BY 1"
    )
    assert _rows(week.dsn, per_source) == _rows(week.dsn, raw_source)


def test_scan_events_partition_every_packet_and_split_at_silences(week: Week) -> None:
    idle = 600
    (events, packets) = _rows(week.dsn, f"SELECT count(), sum(packets) FROM scan_events(idle = {idle})")[0]
    assert packets == week.packets
    assert events > 0
    # Consecutive events of a source and protocol are more than the idle timeout apart.
    (too_close,) = _rows(
        week.dsn,
        f"SELECT countIf(gap <= {idle}) FROM (SELECT dateDiff('second', lagInFrame(end) OVER w, start) "
        f"AS gap, row_number() OVER w AS n FROM scan_events(idle = {idle}) WINDOW w AS "
        "(PARTITION BY source, protocol ORDER BY start ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)) "
        "WHERE n > 1",
    )[0]
    assert too_close == 0
    # A longer timeout merges events: never more of them.
    (fewer,) = _rows(week.dsn, "SELECT count() FROM scan_events(idle = 7200)")[0]
    assert fewer < events


def test_notify_lists_every_mirai_bot_in_exactly_one_as_file_and_no_other_source(
    week: Week, tmp_path: Path
) -> None:
    out = tmp_path / "notify"
    result = CliRunner().invoke(
        main,
        [
            "notify",
            "--since",
            "2022-04-01",
            "--until",
            "2022-04-07",
            "--fingerprint",
            "mirai",
            "--out",
            str(out),
            "--dsn",
            week.dsn,
        ],
    )
    assert result.exit_code == 0, result.output
    listed: dict[str, int] = {}
    files = sorted(out.glob("AS*.json"))
    for path in files:
        doc = json.loads(path.read_text())
        assert path.name.startswith(f"AS{doc['asn']}-")
        assert {s["asn"] for s in doc["sources"]} == {doc["asn"]}
        for s in doc["sources"]:
            listed[s["source"]] = listed.get(s["source"], 0) + 1
            assert "mirai" in s["fingerprints"] and s["packets"] >= 1
            assert s["first_seen"] <= s["last_seen"]
    public = {b for b in week.mirai_bots if ipaddress.ip_address(b).is_global}
    assert len(public) > 100
    assert len(files) > 10  # the bots spread over many operators
    assert set(listed) == public
    assert set(listed.values()) == {1}
    assert len(files) == len(list(out.glob("AS*.csv")))
    regions = [json.loads(p.read_text()) for p in out.glob("region-*.json")]
    assert sum(r["sources"] for r in regions) == len(public)
    assert f"{len(public):,} sources" in result.output
