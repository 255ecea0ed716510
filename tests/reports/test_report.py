"""The report of a simulated quarter recovers the simulator's ground truth (through a real chDB)."""

from __future__ import annotations

import re
from datetime import date

from tests.reports.conftest import Quarter


def _subject(truth_subject: str) -> str:
    return truth_subject if ":" in truth_subject else f"port:{truth_subject}"


def test_top5_ports_and_regions_match_the_truth_with_previous_ranks(story: Quarter) -> None:
    for chart in ("ports", "regions"):
        got = [(r["key"], r["packets"], r["previous_rank"]) for r in story.report["top5"][chart]]
        want = [(r["key"], r["packets"], r["previous_rank"]) for r in story.truth["top5"][chart]]
        assert got == want, chart


def test_every_planted_event_is_among_the_main_events_within_two_days(story: Quarter) -> None:
    planted = story.truth["events"]
    assert len(planted) == 8
    main = [e for e in story.report["events"] if e["rank"] <= story.report["main_events"]]
    assert len(main) <= 8
    told = [m for e in main for m in (e, *e["consequences"])]
    for p in planted:
        start = date.fromisoformat(p["start"])
        found = [
            e
            for e in told
            if e["subject"] == _subject(p["subject"])
            and e["kind"] == p["kind"]
            and abs((date.fromisoformat(e["start"]) - start).days) <= 2
        ]
        assert found, (p, [e["text"] for e in main])


def test_one_cause_is_told_once_with_its_consequences(story: Quarter) -> None:
    # China's Mirai drop on Apr 25 explains the day's other drops: one event, one sentence.
    days = ("2022-04-24", "2022-04-25", "2022-04-26")
    apr25 = [e for e in story.report["events"] if e["start"] in days and e["change_pct"] < 0]
    assert [e["series"] for e in apr25] == ["mirai:CN"]
    assert {c["series"] for c in apr25[0]["consequences"]} >= {"mirai", "region:CN", "port:23/tcp"}


def test_new_top5_entries_are_those_absent_from_the_previous_top5(story: Quarter) -> None:
    want = {
        f"{'port' if chart == 'ports' else 'region'}:{r['key']}"
        for chart in ("ports", "regions")
        for r in story.truth["top5"][chart]
        if r["previous_rank"] is None or r["previous_rank"] > 5
    }
    assert {e["subject"] for e in story.report["new_entries"]} == want
    assert not [e for e in story.report["events"] if e["kind"] == "new_entry"]  # the tables show them


def test_flat_control_quarter_reports_nothing_of_note(control: Quarter) -> None:
    assert control.truth["events"] == []
    assert control.report["events"] == [] and control.report["nothing_of_note"]
    assert control.report["new_entries"] == []  # no previous quarter under this sensor
    assert [r["key"] for r in control.report["top5"]["ports"]] == [
        r["key"] for r in control.truth["top5"]["ports"]
    ]
    assert "Nothing of note" in control.paths.html.read_text()


def test_backscatter_victims_are_aggregated_with_the_most_attacked_first(
    story: Quarter, control: Quarter
) -> None:
    for q in (story, control):
        assert q.report["backscatter"]["episodes"] == q.truth["backscatter"]["episodes"]
        per_victim = {
            v["victim"]: (len(v["episodes"]), sum(ep["packets"] for ep in v["episodes"]))
            for v in q.truth["backscatter"]["victims"]
        }
        top = q.report["backscatter"]["top_victims"]
        assert top[0]["packets"] == max(p for _, p in per_victim.values())
        for v in top:
            assert (v["episodes"], v["packets"]) == per_victim[v["victim"]]


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
    assert story.report["tool"]["name"] == "darkscope" and story.report["tool"]["version"]
    assert story.report["generated"] and story.report["thresholds"]["main_events"] == 8
    s = story.report["series"]["port:23/tcp"]
    assert s["daily"] == fig1["23/tcp"] and len(s["dates"]) == len(s["weekly_average"]) == len(truth_daily)


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


def test_scanner_tools_are_counted_by_per_source_verdict(story: Quarter) -> None:
    tools = {t["tool"]: t for t in story.report["scanner_tools"]["tools"]}
    truth = {
        k: sum(d["by_fingerprint"][k] for d in story.truth["daily"]) for k in ("mirai", "zmap", "masscan")
    }
    assert tools["Mirai"]["packets"] == truth["mirai"]
    for tool, key in (("ZMap", "zmap"), ("Masscan", "masscan")):
        # A source's first packets come before its verdict: a handful fewer than the simulated.
        assert 0.999 * truth[key] <= tools[tool]["packets"] <= truth[key]
        assert tools[tool]["sources"] > 0


def test_mirai_ases_of_the_top_regions_and_focus_unknown_as_null(story: Quarter) -> None:
    rows = story.report["mirai_asns"]
    assert {"CN", "US", "JP"} <= {r["region"] for r in rows}
    # The tests' GeoIP has no ASN data: unknown, never AS0.
    assert all(r["asn"] is None and r["as_org"] is None for r in rows)
    assert "autonomous systems of the Mirai sources are unknown" in story.paths.html.read_text()


def test_figures_are_numbered_in_page_order_and_events_link_to_them(story: Quarter) -> None:
    html = story.paths.html.read_text()
    numbers = [int(n) for n in re.findall(r"<figcaption>Figure (\d+):", html)]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 7
    assert "[chart]" not in html
    main = [e for e in story.report["events"] if e["rank"] <= story.report["main_events"]]
    for e in main:  # each main event is numbered, and its mark drawn on its figure
        assert f'<li value="{e["rank"]}" id="event{e["rank"]}">' in html
        svg = html[html.index(f'<svg id="{e["figure"]}-svg"') :]
        svg = svg[: svg.index("</svg>")]
        assert f'font-weight="bold">{e["rank"]}</text>' in svg, e["text"]
