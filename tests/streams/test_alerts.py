"""Alert rules on closed windows."""

from __future__ import annotations

import numpy as np

from streams.alerts import AlertDetector, AlertThresholds
from streams.counts import ClosedWindow

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
