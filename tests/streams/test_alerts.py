"""Alert rules on closed windows."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from core.settings import WorkerSettings
from producers.sim.simulate import simulate_quarter
from schemas.codec import Codec
from streams.alerts import SEVERITIES, AlertDetector, AlertThresholds
from streams.enrich import Enricher
from streams.fingerprints import SourceVerdicts
from streams.geo import GeoResolver
from streams.local import LocalCounting
from streams.services import ServiceRegistry
from streams.windows import ClosedWindow

T0 = 1_648_771_200


def hours(series: dict[str, list[int]], kind: str = "port") -> list[ClosedWindow]:
    n = len(next(iter(series.values())))
    return [
        ClosedWindow.of(
            kind, "1h", T0 + 3600 * i, {k: (v[i], max(1, v[i] // 10)) for k, v in series.items() if v[i]}
        )
        for i in range(n)
    ]


def run(windows: list[ClosedWindow], **kw: object) -> list[dict]:
    det = AlertDetector(AlertThresholds(**kw))  # type: ignore[arg-type]
    return [a for w in windows for a in det.observe(w)]


def poisson(rng: np.random.Generator, lam: float, n: int) -> list[int]:
    return [int(x) for x in rng.poisson(lam, n)]


def test_planted_surge_raises_one_alert_with_evidence() -> None:
    rng = np.random.default_rng(1)
    telnet = poisson(rng, 500, 24)
    telnet[15] = 5000
    alerts = run(hours({"23/tcp": telnet, "80/tcp": poisson(rng, 300, 24)}))
    surges = [a for a in alerts if a["kind"] == "surge_packets"]
    assert len(surges) == 1
    a = surges[0]
    assert a["key"] == "23/tcp" and a["observed"] == 5000
    assert a["window_start"].timestamp() == T0 + 15 * 3600
    assert 400 < a["baseline"] < 600 and a["score"] > 6


def test_flat_day_raises_nothing() -> None:
    rng = np.random.default_rng(2)
    series = {f"{p}/tcp": poisson(rng, lam, 24) for p, lam in [(23, 800), (22, 400), (80, 200), (445, 150)]}
    assert run(hours(series)) == []


def test_cooldown_holds_back_repeats() -> None:
    series = [100] * 8 + [2000] * 4
    alerts = run(hours({"23/tcp": series}), cooldown_windows=6)
    assert len([a for a in alerts if a["kind"] == "surge_packets"]) == 1


def test_port_entering_the_top_ten() -> None:
    base = {f"{p}/tcp": [1000 - p] * 12 for p in range(10)}
    base["3389/tcp"] = [0] * 11 + [1500]
    alerts = run(hours(base))
    new = [a for a in alerts if a["kind"] == "top_new_port"]
    assert [a["key"] for a in new] == ["3389/tcp"]


def test_mirai_burst_from_one_region_counts_sources() -> None:
    windows = [
        ClosedWindow.of(
            "fp_region",
            "1h",
            T0 + 3600 * i,
            {"mirai/KR": (400, 40 if i < 10 else 400), "mirai/CN": (400, 40)},
        )
        for i in range(12)
    ]
    alerts = run(windows)
    assert {(a["kind"], a["key"]) for a in alerts} == {("mirai_burst", "mirai/KR")}


def test_backscatter_episode_needs_a_minute_of_sustained_replies() -> None:
    det = AlertDetector()
    victim = "203.0.113.9"
    w1 = ClosedWindow.of("victim", "1m", T0, {victim: (45, 40), "192.0.2.1": (3, 3)})
    w2 = ClosedWindow.of("victim", "1m", T0 + 60, {victim: (50, 44)})
    w3 = ClosedWindow.of("victim", "1m", T0 + 120, {"192.0.2.1": (3, 3)})
    assert det.observe(w1) == [] and det.observe(w2) == []
    alerts = det.observe(w3)
    assert [(a["kind"], a["key"], a["evidence"]["state"]) for a in alerts] == [
        ("backscatter_episode", victim, "open"),
        ("backscatter_episode", victim, "close"),
    ]
    assert alerts[0]["evidence"]["targets"] == "44"


# Backscatter episodes: one alert, opened, updated and closed, graded by magnitude -----------

V = "203.0.113.9"


def minutes(per_minute: list[int], start: int = T0, victim: str = V) -> list[ClosedWindow]:
    """Victim minute windows from ``start``; a 0 is a minute without the victim (another
    victim keeps the minute's window closing, as it does in a real darknet)."""
    return [
        ClosedWindow.of(
            "victim", "1m", start + 60 * i, ({victim: (p, p)} if p else {}) | {"192.0.2.1": (1, 1)}
        )
        for i, p in enumerate(per_minute)
    ]


def episode_records(alerts: list[dict], victim: str = V) -> list[dict]:
    return [a for a in alerts if a["kind"] == "backscatter_episode" and a["key"] == victim]


def test_an_episode_is_one_alert_opened_then_closed_not_one_per_minute() -> None:
    alerts = run(minutes([50] * 10 + [0]))
    records = episode_records(alerts)
    assert [a["evidence"]["state"] for a in records] == ["open", "close"]
    assert len({a["alert_id"] for a in records}) == 1
    opened, closed = records
    assert opened["window_start"].timestamp() == closed["window_start"].timestamp() == T0
    assert closed["window_end"].timestamp() == T0 + 600  # its last minute's end
    assert closed["evidence"]["packets"] == "500" and closed["evidence"]["minutes"] == "10"


def test_an_episode_split_over_two_minutes_below_the_rate_in_each_is_seen_whole() -> None:
    # 62 s at 60 packets a minute starting at :30 s: 30 packets in one minute, 32 in the next;
    # a replay that starts at :55 puts 5 in the first minute, 57 in the second.
    for split in ([30, 32], [5, 57]):
        [opened] = [a for a in run(minutes([*split, 0])) if a["evidence"]["state"] == "open"]
        assert opened["evidence"]["packets"] == "62"
        assert float(opened["evidence"]["packets_per_minute"]) == 62.0


@pytest.mark.parametrize(
    ("per_minute", "why"),
    [([40], "one minute cannot show 60 s"), ([12, 12], "24 packets < 25"), ([10, 10, 10, 5], "12 a minute")],
)
def test_runs_short_of_moores_rule_raise_nothing(per_minute: list[int], why: str) -> None:
    assert episode_records(run(minutes([*per_minute, 0]))) == [], why


def test_the_attack_rate_is_extrapolated_to_the_whole_address_space_from_the_monitored_size() -> None:
    # 120 packets a minute at a /24: 2 pps * 2^32 / 256 = 33.5 M pps at the victim (Moore et al.).
    for monitored in (256, 65_536):
        runs = minutes([60, 120, 120, 90, 0])  # first and last minutes partial
        [opened, _] = episode_records(run(runs, monitored_addresses=monitored))
        assert opened["observed"] == round(2.0 * 2**32 / monitored)
        assert opened["baseline"] == round(0.5 * 2**32 / monitored)  # the 30 packets/min floor
        assert opened["score"] == 4.0
        assert opened["evidence"]["extrapolated_pps"] == f"{2.0 * 2**32 / monitored:.0f}"


def test_severity_grows_with_the_attack_rate() -> None:
    thresholds = {"backscatter_warning_pps": 20e6, "backscatter_critical_pps": 40e6}
    grades = []
    for ppm in (40, 60, 80, 100, 150, 200, 400):  # 11, 17, 22, 28, 42, 56, 112 M pps at a /24
        [*_, closed] = episode_records(run(minutes([ppm] * 3 + [0]), **thresholds))
        grades.append(closed["severity"])
    assert grades == ["info", "info", "warning", "warning", "critical", "critical", "critical"]


def test_an_episode_is_updated_when_its_severity_rises_and_keeps_its_id() -> None:
    thresholds = {"backscatter_warning_pps": 20e6, "backscatter_critical_pps": 40e6}
    # 40 a minute (info), then the attack grows: the mean rate passes warning, then critical.
    records = episode_records(run(minutes([40, 40, 40, 200, 300, 400, 0]), **thresholds))
    assert [(a["evidence"]["state"], a["severity"]) for a in records] == [
        ("open", "info"),
        ("update", "warning"),
        ("update", "critical"),
        ("close", "critical"),
    ]
    assert len({a["alert_id"] for a in records}) == 1
    assert [a["evidence"]["revision"] for a in records] == ["0", "1", "2", "2"]


def test_a_silent_minute_ends_the_episode_and_the_next_run_is_a_new_alert() -> None:
    records = episode_records(run(minutes([50, 50, 0, 50, 50, 0])))
    assert [a["evidence"]["state"] for a in records] == ["open", "close", "open", "close"]
    first, second = {a["alert_id"] for a in records[:2]}, {a["alert_id"] for a in records[2:]}
    assert len(first) == len(second) == 1 and first != second


def test_an_episode_still_open_when_no_victim_minute_comes_closes_on_close_before() -> None:
    det = AlertDetector()
    raised = [a for w in minutes([50, 50, 50]) for a in det.observe(w)]
    assert [a["evidence"]["state"] for a in episode_records(raised)] == ["open"]
    assert det.close_before(T0 + 180) == []  # its last minute ends at T0 + 180
    [closed] = det.close_before(T0 + 181)
    assert closed["evidence"]["state"] == "close" and closed["alert_id"] == raised[0]["alert_id"]
    assert det.close_before(T0 + 10_000) == []


def test_the_cooldown_never_holds_back_an_episodes_records() -> None:
    records = episode_records(run(minutes([50, 50, 0, 50, 50, 0]), cooldown_windows=100))
    assert len(records) == 4


def test_surges_are_graded_by_ratio_and_volume() -> None:
    def grade(base: int, spike: int) -> str:
        [a] = surges(run(hours({"23/tcp": [base] * 8 + [spike]})))
        assert a["evidence"]["state"] == "event"
        return str(a["severity"])

    # The floor is 200 packets; a surge is at least 5x its baseline.
    assert grade(50, 300) == "info"  # 6x, 1.5x the floor: barely past the rule
    assert grade(100, 1_500) == "warning"  # 15x, 7.5x the floor
    assert grade(100, 2_500) == "critical"  # 25x, 12.5x the floor


def test_a_two_minute_episode_is_opened_and_closed_when_it_ends() -> None:
    det = AlertDetector()
    raised = [a for w in minutes([40, 37]) for a in det.observe(w)]
    assert raised == []  # a 61 s burst or two steady minutes: not known until the run ends
    records = [a for w in minutes([0], start=T0 + 120) for a in det.observe(w)]
    assert [a["evidence"]["state"] for a in records] == ["open", "close"]
    assert records[0]["evidence"]["packets_per_minute"] == "77.0"


def test_every_planted_dos_episode_of_the_simulator_is_one_alert_graded_by_its_rate() -> None:
    """The demo's quarter, four days of it, through the worker's count and merge stages."""
    codec, settings = Codec(), WorkerSettings()
    # Thresholds that cut the simulator's 40-240 packets/min (at its /24) into three grades.
    detector = AlertDetector(AlertThresholds(backscatter_warning_pps=25e6, backscatter_critical_pps=35e6))
    local = LocalCounting(settings, 2, 1, detector, keep_log=False)
    sim = simulate_quarter("2022Q2", packets_per_day=20_000, prefix="198.51.100.0/24", days=4, seed=0)
    with GeoResolver.default() as geo:
        enricher = Enricher(geo, ServiceRegistry.load(), SourceVerdicts(), codec)
        for offset, batch in enumerate(sim.batches()):
            local.enrich(enricher, batch, offset)
    local.idle(0)
    local.run()
    # The merge stage closed every episode: in a quiet minute, or at the end of the input.
    assert detector.close_before(2**62) == []
    records = episode_records_all(local.alerts)
    planted = [
        (v["victim"], ep)
        for v in sim.ground_truth().to_dict()["backscatter"]["victims"]
        for ep in v["episodes"]
    ]
    assert len(planted) >= 20
    claimed: set[str] = set()
    rates, grades = [], []
    for victim, ep in planted:
        start, end = (datetime.fromisoformat(ep[k]).timestamp() for k in ("start", "end"))
        ids = {
            a["alert_id"]
            for a in records
            if a["key"] == victim
            and a["window_start"].timestamp() <= end
            and a["window_end"].timestamp() > start
        }
        assert len(ids) == 1, (victim, ep)
        mine = [a for a in records if a["alert_id"] in ids]
        assert mine[0]["evidence"]["state"] == "open"
        assert mine[-1]["evidence"]["state"] == "close"
        claimed |= ids
        rates.append(ep["packets"] / ep["seconds"] * 60)
        grades.append(SEVERITIES.index(mine[-1]["severity"]))
    assert claimed == {a["alert_id"] for a in records}  # no episode alert without a planted episode
    assert len(set(grades)) == 3
    # Severity grows with the planted rate: every grade's mean rate above the one below it,
    # and nearly every pair of episodes of different grades in the order of their rates.
    means = [np.mean([r for r, g in zip(rates, grades, strict=True) if g == k]) for k in range(3)]
    assert means[0] < means[1] < means[2]
    pairs = [
        (r1 < r2) == (g1 < g2)
        for r1, g1 in zip(rates, grades, strict=True)
        for r2, g2 in zip(rates, grades, strict=True)
        if g1 != g2
    ]
    assert sum(pairs) / len(pairs) > 0.9


def episode_records_all(alerts: list[dict]) -> list[dict]:
    return [a for a in alerts if a["kind"] == "backscatter_episode"]


# Baselines over a span of event time -------------------------------------------------------

H = 3600
Y2010, Y2023 = 1_262_304_000, 1_672_531_200  # 2010-01-01 and 2023-01-01, 00:00Z


def port_hour(start: int, packets: dict[str, int], revision: int = 0) -> ClosedWindow:
    return ClosedWindow.of(
        "port", "1h", start, {k: (p, max(1, p // 10)) for k, p in packets.items()}, revision
    )


def surges(alerts: list[dict]) -> list[dict]:
    return [a for a in alerts if a["kind"] == "surge_packets"]


def test_replay_years_after_the_last_windows_raises_no_surge_against_them() -> None:
    det = AlertDetector()
    old = [port_hour(Y2010 + H * i, {"23/tcp": 100, "80/tcp": 50}) for i in range(48)]
    assert [a for w in old for a in det.observe(w)] == []
    # Nothing closed in the 24 hours before it: no baseline, however large the count.
    assert det.observe(port_hour(Y2023, {"23/tcp": 1_000_000, "445/tcp": 500_000})) == []


def test_a_replay_after_a_gap_is_compared_with_its_own_windows_not_with_zeros() -> None:
    det = AlertDetector()
    for i in range(48):
        det.observe(port_hour(Y2010 + H * i, {"23/tcp": 1000}))
    # A flat replay: from its 6th hour it has history, and its baseline is its own hours (the
    # years in between are not a day of silent windows, which would make 1000 a surge).
    replay = [port_hour(Y2023 + H * i, {"23/tcp": 1000 + i}) for i in range(12)]
    assert [a for w in replay for a in det.observe(w)] == []
    [a] = surges(det.observe(port_hour(Y2023 + 12 * H, {"23/tcp": 9000})))
    assert a["baseline"] == float(np.median([1000 + i for i in range(12)]))
    assert a["evidence"]["history"] == "12" and a["evidence"]["slots"] == "12"


def test_silent_hours_in_the_span_count_as_zero() -> None:
    det = AlertDetector(AlertThresholds(baseline_windows=24, min_history=6))
    busy = [1000 + 100 * i for i in range(24)]
    assert [a for i, p in enumerate(busy) for a in det.observe(port_hour(T0 + H * i, {"23/tcp": p}))] == []
    # Hours 24..33 are silent (no port window closed); hour 34's span is hours 10..33.
    [a] = surges(det.observe(port_hour(T0 + 34 * H, {"23/tcp": 20_000})))
    series = np.array(busy[10:] + [0] * 10, float)
    assert a["baseline"] == float(np.median(series)) == 2150.0
    assert a["baseline"] != float(np.median(busy[10:]))  # not the median of the closed windows only
    assert a["evidence"]["mad"] == f"{float(np.median(np.abs(series - np.median(series)))):g}"
    assert a["evidence"]["history"] == "14" and a["evidence"]["slots"] == "24"


@pytest.mark.parametrize(("silent", "alerts"), [(18, 1), (19, 0)])
def test_too_little_history_in_the_span_does_not_alert(silent: int, alerts: int) -> None:
    det = AlertDetector(AlertThresholds(baseline_windows=24, min_history=6))
    for i in range(24):
        det.observe(port_hour(T0 + H * i, {"23/tcp": 1000}))
    # After 18 silent hours, 6 windows closed in the span of the next one; after 19, only 5.
    raised = surges(det.observe(port_hour(T0 + (24 + silent) * H, {"23/tcp": 50_000})))
    assert len(raised) == alerts
    if raised:
        assert raised[0]["baseline"] == 0.0 and raised[0]["evidence"]["history"] == "6"


def test_a_window_closed_twice_counts_once_in_the_baseline() -> None:
    det = AlertDetector(AlertThresholds(baseline_windows=4, min_history=3))
    for i in range(3):
        assert det.observe(port_hour(T0 + H * i, {"23/tcp": 100})) == []
    # Hour 3 closes, then late rows close it again: the second close replaces the first.
    assert det.observe(port_hour(T0 + 3 * H, {"23/tcp": 250})) == []
    assert det.observe(port_hour(T0 + 3 * H, {"23/tcp": 300}, revision=1)) == []
    # The span of hour 4 is [100, 100, 100, 300]: median 100, so 600 is a surge. Counting hour
    # 3 twice would make it [100, 100, 300, 300] (or worse), median 200, and 600 no surge.
    [a] = surges(det.observe(port_hour(T0 + 4 * H, {"23/tcp": 600})))
    assert a["baseline"] == 100.0
    assert a["evidence"]["history"] == "4" and a["evidence"]["slots"] == "4"


def test_history_is_bounded_and_a_late_older_window_does_not_crash() -> None:
    det = AlertDetector(AlertThresholds(baseline_windows=24))
    rng = np.random.default_rng(3)
    for i in range(200):
        det.observe(port_hour(T0 + H * i, {"23/tcp": int(rng.poisson(800))}))
    assert len(det._tracks[("port", "1h")].windows) <= 25
    assert det.observe(port_hour(T0 + 10 * H, {"23/tcp": 90_000})) == []  # long gone: no span
    assert det.observe(port_hour(T0 + 190 * H, {"23/tcp": 800})) == []
    assert len(det._tracks[("port", "1h")].windows) <= 25


@pytest.mark.parametrize(("last", "new"), [(7, True), (6, False)])
def test_top_new_port_ignores_top_sets_older_than_the_span(last: int, new: bool) -> None:
    ports = {f"{p}/tcp": 1000 - p for p in range(10)}
    det = AlertDetector(AlertThresholds(baseline_windows=4, min_history=2, cooldown_windows=1))
    raised = []
    # 3389/tcp is in the top 10 of hour 2; hours 3 and 4 are silent.
    for hour in [h for h in (0, 1, 2, 5, 6) if h < last]:
        extra = {"3389/tcp": 1500} if hour == 2 else {}
        raised += [(a, hour) for a in det.observe(port_hour(T0 + H * hour, ports | extra))]
    raised += [(a, last) for a in det.observe(port_hour(T0 + H * last, ports | {"3389/tcp": 1500}))]
    tops = [(a["key"], hour) for a, hour in raised if a["kind"] == "top_new_port"]
    # Hour 7's span (hours 3..6) holds 2 windows, neither with 3389/tcp in its top: it is new
    # again, though it was in the top 10 of the 4th-last window. Hour 6's span has hour 2.
    assert tops == [("3389/tcp", 2)] + ([("3389/tcp", last)] if new else [])


def test_expired_cooldowns_are_let_go_and_change_no_alert() -> None:
    """A new port surging every hour for 1,000 hours: the cooldowns of the past ones are
    dropped once expired (a worker's memory does not grow with every key ever alerted on),
    and the alerts are those of a detector that keeps every cooldown."""
    windows = [port_hour(T0 + H * i, {"80/tcp": 1000, f"{10_000 + i}/tcp": 50_000}) for i in range(1000)]
    pruned = AlertDetector(AlertThresholds(cooldown_windows=6))
    keeps = AlertDetector(AlertThresholds(cooldown_windows=6))
    keeps._cooling = 10**9
    got = [a["alert_id"] for w in windows for a in pruned.observe(w)]
    assert got == [a["alert_id"] for w in windows for a in keeps.observe(w)]
    assert len([i for i in got if "surge" in i]) >= 900
    assert len(keeps._cooldown_until) >= 900 and len(pruned._cooldown_until) < 200
