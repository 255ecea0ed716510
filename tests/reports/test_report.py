"""The report of a simulated quarter recovers the simulator's ground truth (through a real chDB)."""

from __future__ import annotations

from datetime import date

from tests.reports.conftest import Quarter

ANOMALIES = {"surge", "drop", "burst", "dip", "trend", "rank_swap"}


def _subject(truth_subject: str) -> str:
    return truth_subject if ":" in truth_subject else f"port:{truth_subject}"


def test_top5_ports_and_regions_match_the_truth_with_previous_ranks(story: Quarter) -> None:
    for chart in ("ports", "regions"):
        got = [(r["key"], r["packets"], r["previous_rank"]) for r in story.report["top5"][chart]]
        want = [(r["key"], r["packets"], r["previous_rank"]) for r in story.truth["top5"][chart]]
        assert got == want, chart


def test_every_planted_event_is_detected_within_two_days(story: Quarter) -> None:
    planted = story.truth["events"]
    assert len(planted) == 8
    events = story.report["events"]
    for p in planted:
        start = date.fromisoformat(p["start"])
        found = [
            e
            for e in events
            if e["subject"] == _subject(p["subject"])
            and e["kind"] == p["kind"]
            and abs((date.fromisoformat(e["start"]) - start).days) <= 2
        ]
        assert found, (p, [e for e in events if e["subject"] == _subject(p["subject"])])


def test_new_top5_entries_are_those_absent_from_the_previous_top5(story: Quarter) -> None:
    want = {
        f"{'port' if chart == 'ports' else 'region'}:{r['key']}"
        for chart in ("ports", "regions")
        for r in story.truth["top5"][chart]
        if r["previous_rank"] is None or r["previous_rank"] > 5
    }
    got = {e["subject"] for e in story.report["events"] if e["kind"] == "new_entry"}
    assert got == want


def test_flat_control_quarter_reports_no_event(control: Quarter) -> None:
    assert control.truth["events"] == []
    anomalies = [e for e in control.report["events"] if e["kind"] in ANOMALIES]
    assert anomalies == []
    # No previous quarter under this sensor: no new entries can be claimed.
    assert not [e for e in control.report["events"] if e["kind"] == "new_entry"]
    assert [r["key"] for r in control.report["top5"]["ports"]] == [
        r["key"] for r in control.truth["top5"]["ports"]
    ]


def test_backscatter_episodes_match_the_simulated_dos_episodes(story: Quarter, control: Quarter) -> None:
    for q in (story, control):
        assert q.report["backscatter"]["episodes"] == q.truth["backscatter"]["episodes"]
        listed = [e for e in q.report["events"] if e["kind"] == "backscatter"]
        biggest = max(
            (ep["packets"], v["victim"]) for v in q.truth["backscatter"]["victims"] for ep in v["episodes"]
        )
        assert f"victim:{biggest[1]}" in {e["subject"] for e in listed}


def test_daily_figures_and_mirai_sources_are_in_the_json(story: Quarter) -> None:
    figs = story.report["figures"]
    truth_daily = story.truth["daily"]
    fig1 = {s["key"]: s["daily"] for s in figs["fig1"]["series"]}
    assert fig1["23/tcp"] == [d["by_port"]["23/tcp"] for d in truth_daily]
    fig3 = figs["fig3"]["series"][0]["daily"]
    assert fig3 == [d["by_fingerprint"]["mirai"] for d in truth_daily]
    assert len(figs["fig3"]["series"][0]["weekly_average"]) == len(truth_daily)
    fig6 = figs["fig6"]["series"][0]
    assert fig6["key"] == "JP" and fig6["daily"] == [d["mirai_by_region"].get("JP", 0) for d in truth_daily]
    ranks = figs["fig4"]["focus_rank"]
    assert ranks["mirai"] is not None and ranks["all"] is not None
    assert story.report["packets"] == story.truth["totals"]["packets"]


def test_health_counts_days_packets_and_monitored_addresses(story: Quarter) -> None:
    (h,) = story.report["health"]
    assert h["sensor"] == "story"
    assert h["days_with_data"] == 91
    assert h["packets"] == story.truth["totals"]["packets"]
    assert h["monitored_addresses"] == 256
    assert h["packets_per_address_day"] == h["packets"] / 256 / 91


def test_terminal_tables_list_both_top5(story: Quarter) -> None:
    assert "Top 5 destination ports" in story.paths.tables and "Top 5 source regions" in story.paths.tables
    assert "23/TCP (telnet)" in story.paths.tables
