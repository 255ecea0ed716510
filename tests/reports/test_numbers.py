"""Every number an event quotes is recomputed from the JSON's series: the weekly averages the
charts draw, on the days the sentence names (the story quarter and the flat control)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from tests.reports.conftest import Quarter


def _all(report: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for e in report["events"]:
        yield e
        yield from e["consequences"]


def _week(point: dict[str, Any], dates: list[str]) -> str:
    """The days the centred weekly average of ``point`` covers (fewer at the quarter's ends),
    as a sentence names them; checked against the point's own ``window``."""
    i = dates.index(point["date"])
    a, b = (date.fromisoformat(dates[k]) for k in (max(i - 3, 0), min(i + 3, len(dates) - 1)))
    assert point["window"] == [a.isoformat(), b.isoformat()]
    return f"{a:%b} {a.day}-{b.day}" if a.month == b.month else f"{a:%b} {a.day}-{b:%b} {b.day}"


def _value(report: dict[str, Any], key: str, point: dict[str, Any]) -> float:
    s = report["series"][key]
    return float(s[point["of"]][s["dates"].index(point["date"])])


@pytest.fixture(params=["story", "control"])
def quarter(request: pytest.FixtureRequest) -> Quarter:
    q: Quarter = request.getfixturevalue(request.param)
    return q


def test_every_quoted_number_is_the_charted_series_on_the_named_day(quarter: Quarter) -> None:
    r = quarter.report
    for e in _all(r):
        base, value = e["compared"]
        base_key = e["other_series"] if e["kind"] == "rank_swap" else e["series"]
        assert _value(r, base_key, base) == pytest.approx(base["value"], abs=0.051), e["text"]
        assert _value(r, e["series"], value) == pytest.approx(value["value"], abs=0.051), e["text"]
        want = 100 * (value["value"] / base["value"] - 1)
        assert e["change_pct"] == pytest.approx(want, abs=0.2), e["text"]


def test_every_sentence_gives_its_percentage_and_names_its_weeks(quarter: Quarter) -> None:
    for e in quarter.report["events"]:
        if e["kind"] == "rank_swap":
            continue
        assert f"{e['change_pct'] / 100:+.0%}" in e["text"], e["text"]
        for p in e["compared"]:
            if p["of"] == "weekly_average":
                assert _week(p, quarter.report["series"][e["series"]]["dates"]) in e["text"], e["text"]
        for c in e["consequences"]:
            if c["kind"] != "rank_swap":
                assert f"{c['change_pct'] / 100:+.0%}" in e["text"], (c, e["text"])


def test_a_run_ends_where_its_weekly_average_stops_moving_that_way(quarter: Quarter) -> None:
    r = quarter.report
    for e in _all(r):
        if e["kind"] not in ("trend", "surge", "drop") or e["end"] is None or e["start"] == r["first_day"]:
            continue
        s = r["series"][e["series"]]
        i0, i1 = (s["dates"].index(p["date"]) for p in e["compared"])
        run = s["weekly_average"][i0 : i1 + 1]
        assert run[-1] == (max(run) if e["change_pct"] > 0 else min(run)), e["text"]


def test_an_overtaking_is_a_crossing_of_weekly_averages_held_a_week(quarter: Quarter) -> None:
    r = quarter.report
    for e in (e for e in _all(r) if e["kind"] == "rank_swap"):
        a, b = r["series"][e["series"]], r["series"][e["other_series"]]
        t, end = a["dates"].index(e["start"]), a["dates"].index(e["end"])
        diff = [x - y for x, y in zip(a["weekly_average"], b["weekly_average"], strict=True)]
        assert all(d > 0 for d in diff[t : end + 1]) and end - t >= 6, e["text"]
        assert all(d < 0 for d in diff[t - 7 : t]), e["text"]


def test_events_are_ranked_by_significance_and_the_main_section_is_short(quarter: Quarter) -> None:
    events = quarter.report["events"]
    assert [e["rank"] for e in events] == list(range(1, len(events) + 1))
    scores = [e["score"] for e in events]
    assert scores == sorted(scores, reverse=True)
    assert quarter.report["main_events"] <= 8


def test_nothing_is_dated_on_the_first_day_but_a_raised_start_or_a_quarter_long_trend(
    quarter: Quarter,
) -> None:
    r = quarter.report
    for e in _all(r):
        if e["start"] == r["first_day"]:
            assert e["kind"] in ("surge", "trend"), e["text"]
            assert "from the start of the quarter" in e["text"] or "throughout the quarter" in e["text"]
