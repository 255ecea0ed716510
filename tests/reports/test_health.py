"""The telescope-health figure: packets stored per sensor and day, read back from a real chDB
store (the story quarter has no gap; sensor 'gappy' misses five days)."""

from __future__ import annotations

import re
from datetime import date
from html import unescape

from reports.health import spans
from reports.quarters import quarter_days
from sinks.store import Store
from tests.reports.conftest import GAPPY_MISSING, Quarter


def _svg(html: str, fid: str = "fig-health") -> str:
    svg = html[html.index(f'<svg id="{fid}-svg"') :]
    return svg[: svg.index("</svg>")]


def _desc(svg: str) -> str:
    found = re.search(r'<desc id="fig-health-desc">(.*?)</desc>', svg)
    assert found
    return unescape(found.group(1))


def _store_daily(store: Store, sensor: str) -> dict[date, int]:
    """Packets per day of ``sensor`` in 2022Q2, counted from the raw packets (not the rollups)."""
    rows = store.query(
        "SELECT day, count() FROM packets WHERE sensor = %(s)s AND day >= '2022-04-01' "
        "AND day <= '2022-06-30' GROUP BY day",
        parameters={"s": sensor},
    ).result_rows
    return {d: int(n) for d, n in rows}


def test_missing_days_are_written_as_runs() -> None:
    days = [date(2022, 4, 5), date(2022, 4, 7), date(2022, 4, 10), date(2022, 4, 11), date(2022, 4, 12)]
    assert spans(days) == "Apr 5, Apr 7, Apr 10 to Apr 12"
    assert spans([date(2022, 4, 30), date(2022, 5, 1)]) == "Apr 30 to May 1"


def test_health_figure_is_the_last_numbered_figure_in_the_health_section(story: Quarter) -> None:
    html = story.paths.html.read_text()
    numbers = [int(n) for n in re.findall(r"<figcaption>Figure (\d+):", html)]
    health = html[html.index('<h2 id="health">') :]
    assert re.search(
        rf'<figure id="fig-health"><figcaption>Figure {numbers[-1]}: Daily packets stored per sensor'
        r'</figcaption><svg id="fig-health-svg"',
        health,
    )
    assert html.count('<svg id="fig-health-svg"') == 1
    assert story.report["health"][0]["figure"] == "fig-health"


def test_health_desc_states_each_sensors_stored_packets_from_the_store(
    story: Quarter, report_store: Store
) -> None:
    daily = _store_daily(report_store, "story")
    total = sum(daily.values())
    assert len(daily) == 91 and total == story.truth["totals"]["packets"]
    desc = _desc(_svg(story.paths.html.read_text()))
    assert desc == f"story: {total:,} packets stored on 91 of 91 days; no day without data."
    (h,) = story.report["health"]
    assert h["dates"] == [d.isoformat() for d in quarter_days("2022Q2")]
    assert h["daily"] == [daily[d] for d in quarter_days("2022Q2")]
    assert story.report["figures"]["fig-health"]["desc"] == desc


def test_a_sensors_missing_days_are_gaps_in_its_line_and_null_in_json(
    gappy: Quarter, report_store: Store
) -> None:
    days = quarter_days("2022Q2")
    daily = _store_daily(report_store, "gappy")
    assert sorted(daily) == [d for i, d in enumerate(days) if i not in GAPPY_MISSING]
    (h,) = gappy.report["health"]
    assert h["days_with_data"] == 86 and h["packets"] == sum(daily.values())
    assert h["daily"] == [daily.get(d) for d in days]  # None where the store has no row
    assert [i for i, v in enumerate(h["daily"]) if v is None] == list(GAPPY_MISSING)

    svg = _svg(gappy.paths.html.read_text())
    desc = _desc(svg)
    assert desc == (
        f"gappy: {sum(daily.values()):,} packets stored on 86 of 91 days; "
        "no data on Apr 5, Apr 7, Apr 10 to Apr 12."
    )
    # Runs with data: Apr 1-4, Apr 6 alone (a dot), Apr 8-9, Apr 13-Jun 30; never a zero joined
    # across a missing day.
    lines = re.findall(r'<polyline points="([^"]+)"', svg)
    assert [len(p.split()) for p in lines] == [4, 2, 79]
    assert svg.count("<circle ") == 1
    assert gappy.report["figures"]["fig-health"]["series"][0]["days_without_data"] == [
        days[i].isoformat() for i in GAPPY_MISSING
    ]
