"""Alert rules on closed windows."""

from __future__ import annotations

import numpy as np
import pytest

from streams.alerts import AlertDetector, AlertThresholds
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
    assert det.observe(w1) == []
    alerts = det.observe(w2)
    assert [(a["kind"], a["key"]) for a in alerts] == [("backscatter_episode", victim)]
    assert alerts[0]["evidence"]["targets"] == "44"


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
