"""Notification lists on hand-written packets in real chDB: one file per AS, evidence per source,
filters, region summaries; reserved space never listed; filters bound, never formatted.

The packets go into the reports package's store (chDB opens one path per process), in April
2021 and under sensors of their own, and the registry loaded here lists the package's sensors
too, so that the quarterly reports of the other tests see no change."""

from __future__ import annotations

import csv
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from reports.notify import NotifyFilter, notification, write_notification
from schemas.fingerprints import Fingerprint
from sinks.registry import parse_registry, store_registry
from sinks.store import Store
from tests.sinks.packets import Pkt, insert_packets

T0 = datetime(2021, 4, 1, 6, tzinfo=UTC)
MIRAI = int(Fingerprint.MIRAI)
ZMAP = int(Fingerprint.ZMAP)
WEEK = (date(2021, 4, 1), date(2021, 4, 7))
REGISTRY = """
[[sensor]]
id = "tokyo-1"
group = "japan"
prefixes = ["198.51.100.0/24"]
active_from = 2021-01-01
""" + "".join(
    f'[[sensor]]\nid = "{name}"\ngroup = "reports"\nactive_from = 2021-01-01\n'
    for name in ("story", "flat", "gappy")
)


def _burst(src: str, n: int, *, day: int = 0, **kw: object) -> list[Pkt]:
    start = T0 + timedelta(days=day)
    return [Pkt(start + timedelta(seconds=i), src, dst=f"198.51.100.{i % 200}", **kw) for i in range(n)]  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def store(report_store: Store) -> Store:
    s = report_store
    store_registry(s, parse_registry(REGISTRY))
    insert_packets(
        s,
        [
            # Two Mirai bots of one AS, one seen on two days and by two sensors.
            *_burst("1.0.0.1", 5, fp_flags=MIRAI, fp_verdict=MIRAI, sensor="tokyo-1"),
            *_burst("1.0.0.1", 3, day=2, fp_flags=MIRAI, fp_verdict=MIRAI, sensor="paris-1"),
            *_burst("1.0.0.2", 2, fp_flags=MIRAI, fp_verdict=MIRAI, sensor="tokyo-1"),
            # A Mirai bot of another AS and region.
            *_burst(
                "2.0.0.1",
                4,
                fp_flags=MIRAI,
                fp_verdict=MIRAI,
                asn=64501,
                as_org="Other/Telecom, Inc.",
                region="KR",
                sensor="tokyo-1",
            ),
            # A confirmed ZMap source, and a source whose one packet matched ZMap's IP id by chance.
            *_burst(
                "3.0.0.1",
                6,
                fp_flags=ZMAP,
                fp_verdict=ZMAP,
                asn=64502,
                as_org="Scanners",
                sensor="tokyo-1",
            ),
            *_burst("3.0.0.2", 1, fp_flags=ZMAP, asn=64502, as_org="Scanners", sensor="tokyo-1"),
            # Mirai-looking packets from private, shared and documentation space.
            *_burst("10.1.2.3", 9, fp_flags=MIRAI, fp_verdict=MIRAI, sensor="tokyo-1"),
            *_burst("100.64.0.9", 9, fp_flags=MIRAI, fp_verdict=MIRAI, sensor="tokyo-1"),
            *_burst("192.0.2.1", 9, fp_flags=MIRAI, fp_verdict=MIRAI, sensor="tokyo-1"),
            # Outside the period.
            *_burst("4.0.0.1", 3, day=10, fp_flags=MIRAI, fp_verdict=MIRAI, sensor="tokyo-1"),
        ],
    )
    return s


def _sources(store: Store, **kw: object) -> dict[str, int]:
    n = notification(store, NotifyFilter(*WEEK, **kw))  # type: ignore[arg-type]
    return {s.source: s.packets for a in n.ases for s in a.sources}


def test_mirai_bots_are_filed_under_their_as_with_their_evidence(store: Store, tmp_path: Path) -> None:
    n = notification(store, NotifyFilter(*WEEK, fingerprint="mirai"))
    assert [(a.asn, a.stem, [s.source for s in a.sources]) for a in n.ases] == [
        (64500, "AS64500-example-net", ["1.0.0.1", "1.0.0.2"]),
        (64501, "AS64501-other-telecom-inc", ["2.0.0.1"]),
    ]
    assert n.excluded_reserved == 3
    bot = n.ases[0].sources[0]
    assert (bot.packets, bot.destinations, bot.dst_ports, bot.fingerprints) == (8, 5, ("23/tcp",), ("mirai",))
    assert bot.sensor_groups == ("japan", "unregistered")
    assert (bot.first_seen, bot.last_seen) == (T0, T0 + timedelta(days=2, seconds=2))

    paths = write_notification(n, tmp_path)
    assert sorted(p.name for p in paths) == [
        "AS64500-example-net.csv",
        "AS64500-example-net.json",
        "AS64501-other-telecom-inc.csv",
        "AS64501-other-telecom-inc.json",
        "region-KR.csv",
        "region-KR.json",
        "region-US.csv",
        "region-US.json",
    ]
    rows = list(csv.DictReader((tmp_path / "AS64500-example-net.csv").open()))
    assert [(r["source"], r["packets"], r["sensor_groups"]) for r in rows] == [
        ("1.0.0.1", "8", "japan unregistered"),
        ("1.0.0.2", "2", "japan"),
    ]
    doc = json.loads((tmp_path / "AS64500-example-net.json").read_text())
    assert (doc["asn"], doc["period"], doc["filters"]["fingerprint"]) == (
        64500,
        {"since": "2021-04-01", "until": "2021-04-07"},
        "mirai",
    )
    us = json.loads((tmp_path / "region-US.json").read_text())
    assert (us["ases"], us["sources"], us["packets"]) == (1, 2, 10)


def test_private_and_reserved_sources_are_never_listed(store: Store) -> None:
    listed = _sources(store)
    assert not {"10.1.2.3", "100.64.0.9", "192.0.2.1"} & set(listed)
    assert "1.0.0.1" in listed


def test_scanners_are_listed_by_verdict_not_by_a_chance_match(store: Store) -> None:
    assert _sources(store, fingerprint="zmap") == {"3.0.0.1": 6}
    assert set(_sources(store, fingerprint="any")) == {"1.0.0.1", "1.0.0.2", "2.0.0.1", "3.0.0.1"}
    assert "3.0.0.2" in _sources(store)  # without a fingerprint filter: every source


def test_filters_keep_region_as_group_and_volume(store: Store) -> None:
    assert set(_sources(store, regions=("kr",))) == {"2.0.0.1"}
    assert set(_sources(store, asns=(64502,))) == {"3.0.0.1", "3.0.0.2"}
    assert _sources(store, fingerprint="mirai", sensor_group="unregistered") == {"1.0.0.1": 3}
    assert _sources(store, fingerprint="mirai", sensor_group="japan") == {
        "1.0.0.1": 5,
        "1.0.0.2": 2,
        "2.0.0.1": 4,
    }
    assert set(_sources(store, fingerprint="mirai", min_packets=4)) == {"1.0.0.1", "2.0.0.1"}
    late = notification(store, NotifyFilter(date(2021, 4, 8), date(2021, 4, 30), fingerprint="mirai"))
    assert [s.source for a in late.ases for s in a.sources] == ["4.0.0.1"]


def test_filter_values_are_bound_not_formatted_into_sql(store: Store) -> None:
    assert _sources(store, regions=("US') OR 1=1 --",)) == {}
    assert _sources(store, sensor_group="japan' OR '1'='1") == {}
