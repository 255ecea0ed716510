"""build_report and render_html on hand-made quarters (no store): a quiet quarter, unknown
health values, the analyst's notes."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from reports.build import build_report, render_html, report_json
from reports.notes import render_notes
from reports.series import QuarterData, SensorHealth, Series

DAYS = [date(2022, 4, 1) + timedelta(days=i) for i in range(91)]


def _flat(level: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.poisson(level, len(DAYS)).astype(float)


def _quarter(health: list[SensorHealth]) -> QuarterData:
    ports = {
        k: Series(k, k.upper(), _flat(v, i))
        for i, (k, v) in enumerate({"23/tcp": 900, "22/tcp": 500}.items())
    }
    regions = {k: Series(k, k, _flat(v, 10 + i)) for i, (k, v) in enumerate({"US": 800, "CN": 600}.items())}
    mirai = {"CN": Series("CN", "CN", _flat(300, 20))}
    total = np.sum([s.daily for s in ports.values()], axis=0)
    return QuarterData(
        "2022Q2",
        "2022Q1",
        None,
        DAYS,
        total,
        ports,
        regions,
        mirai,
        _flat(50, 30),
        region_sources={"US": 90, "CN": 80},
        mirai_sources={"CN": 40},
        health=health,
    )


def test_a_quiet_quarter_says_there_is_nothing_of_note() -> None:
    report = build_report(_quarter([]))
    assert report.events == [] and report_json(report)["nothing_of_note"] is True
    html = render_html(report)
    assert "Nothing of note this quarter" in html and "Appendix A" not in html


def test_unknown_health_values_are_null_in_json_and_unknown_in_html() -> None:
    h = SensorHealth(
        "s1",
        91,
        1000,
        captured=0,
        dropped=0,
        monitored_addresses=0,
        first_day=None,
        last_day=None,
        daily=np.full(len(DAYS), 1000 / 91),
    )
    report = build_report(_quarter([h]))
    (row,) = report_json(report)["health"]
    assert row["captured"] is None and row["dropped"] is None
    assert row["monitored_addresses"] is None and row["packets_per_address_day"] is None
    html = render_html(report)
    health = html[html.index('id="health"') :]
    assert health.count(">unknown<") == 4


def test_notes_render_as_their_own_section() -> None:
    report = build_report(_quarter([]))
    report.notes = render_notes("# Recommendations\n\nChange the *default* password.")
    html = render_html(report)
    assert '<h2 id="notes">3. Analyst\'s notes</h2>' in html and "<em>default</em>" in html
    assert '<h2 id="health">4. Telescope health</h2>' in html


def test_every_svg_is_titled_and_described_and_every_figure_numbered() -> None:
    daily = _flat(1000, 40)
    h = SensorHealth("s1", 91, int(daily.sum()), 0, 0, 0, DAYS[0], DAYS[-1], daily)
    html = render_html(build_report(_quarter([h])))
    svgs = html.count("<svg ")
    assert svgs == html.count("<title id=") == html.count("<desc id=") >= 8
    assert '<svg id="fig-health-svg"' in html
    assert html.count("<figcaption>Figure ") == svgs and "[chart]" not in html
