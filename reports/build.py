"""The quarterly report: QuarterData -> figures, tables and events -> one HTML file and one JSON.

``build_report`` is pure (data in, ``Report`` out); ``write_report`` reads the store and writes
``report-<quarter>[-<sensor>].html`` and ``.json``; ``top5_tables`` gives the two top-5 tables as
text for a terminal.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from reports.charts import Line, line_chart, moving_average, paired_bars
from reports.events import (
    Event,
    EventParams,
    Watched,
    backscatter_events,
    new_entries,
    rank_swaps,
    series_events,
)
from reports.queries import Queryable, load_quarter
from reports.series import QuarterData, Ranked, Series, rank, top_with_previous

__all__ = ["Figure", "Report", "ReportPaths", "build_report", "render_html", "top5_tables", "write_report"]

logger = logging.getLogger(__name__)

MIRAI_WATCH_SHARE = 0.05  # Mirai regions outside the top 5 watched for events from this share


@dataclass(frozen=True)
class ReportPaths:
    """Files a report run wrote."""

    html: Path
    json: Path
    tables: str = ""  # Chart 1 and Chart 2 as text (top5_tables), for the terminal


@dataclass(frozen=True)
class Figure:
    """One chart: its anchor id, caption and inline SVG, and the figures behind it."""

    id: str
    title: str
    svg: str
    data: dict[str, Any]


@dataclass
class Report:
    """Everything the HTML and the JSON show."""

    data: QuarterData
    focus_region: str
    top_ports: list[Ranked]
    top_regions: list[Ranked]
    figures: dict[str, Figure]
    events: list[Event]
    mirai_ranks: dict[str, int | None]  # focus region's rank by Mirai sources and by all sources
    extra: dict[str, Any] = field(default_factory=dict)


def _series_json(days: list[Any], series: list[Series]) -> dict[str, Any]:
    return {
        "days": [d.isoformat() for d in days],
        "series": [
            {
                "key": s.key,
                "label": s.label,
                "daily": [int(v) for v in s.daily],
                "weekly_average": [round(float(v), 1) for v in moving_average(s.daily)],
            }
            for s in series
        ],
    }


def _figure(fid: str, title: str, data: QuarterData, series: list[Series], marks: list[Any]) -> Figure:
    svg = line_chart(fid, title, data.days, [Line(s.label, s.daily) for s in series], marks)
    return Figure(fid, title, svg, _series_json(data.days, series))


def _shares(sources: dict[str, int]) -> tuple[dict[str, float], list[str]]:
    total = sum(sources.values()) or 1
    return {k: v / total for k, v in sources.items()}, rank(sources)


def build_report(data: QuarterData, focus_region: str = "JP", params: EventParams | None = None) -> Report:
    """Tables, figures and events of one quarter (pure)."""
    p = params or EventParams()
    focus = focus_region.upper()
    grand = int(data.total.sum())
    top_ports = top_with_previous(data.ports, data.previous_ports, grand)
    top_regions = top_with_previous(data.regions, data.previous_regions, grand)
    days = data.days
    events: list[Event] = []
    port_series = [data.ports[r.key] for r in top_ports]
    region_series = [data.regions[r.key] for r in top_regions]
    for s in port_series:
        events += series_events(Watched(f"port:{s.key}", f"packets to {s.label}", s.daily, "fig1"), days, p)
    for s in region_series:
        events += series_events(
            Watched(f"region:{s.key}", f"packets from {s.label}", s.daily, "fig2"), days, p
        )
    events += rank_swaps("port", port_series, days, "fig1", p)
    events += rank_swaps("region", region_series, days, "fig2", p)
    if data.previous_ports:
        events += new_entries("port", top_ports, data.previous, days, "fig1")
    if data.previous_regions:
        events += new_entries("region", top_regions, data.previous, days, "fig2")
    mirai_total = data.mirai_total
    events += series_events(Watched("mirai", "Mirai packets", mirai_total, "fig3"), days, p)
    mirai_totals = {k: s.total for k, s in data.mirai.items()}
    mirai_top = rank(mirai_totals)[:5]
    all_mirai = sum(mirai_totals.values()) or 1
    watched = [
        k for k in rank(mirai_totals) if k in mirai_top or mirai_totals[k] >= MIRAI_WATCH_SHARE * all_mirai
    ]
    if focus in data.mirai and focus not in watched:
        watched.append(focus)
    extra_figs: dict[str, Figure] = {}
    for k in watched:
        s = data.mirai[k]
        fid = "fig5" if k in mirai_top else "fig6" if k == focus else f"fig-mirai-{k.lower()}"
        found = series_events(Watched(f"mirai:{k}", f"Mirai packets from {s.label}", s.daily, fid), days, p)
        if found and fid.startswith("fig-mirai-"):
            extra_figs[fid] = _figure(
                fid, f"Mirai packets from {s.label}", data, [s], [e.start for e in found]
            )
        events += found
    bs = Series("backscatter", "Backscatter packets", data.backscatter)
    events += series_events(Watched("backscatter", "backscatter packets", data.backscatter, "fig7"), days, p)
    events += backscatter_events(data.episodes, "fig7", p.top_episodes)
    events.sort(key=lambda e: (e.start, e.figure, e.subject, e.kind))

    def marks(fig: str) -> list[Any]:
        return sorted(
            {e.start for e in events if e.figure == fig and e.kind not in ("new_entry", "backscatter")}
        )

    figures = {
        "fig1": _figure(
            "fig1", "Daily packets at the top 5 destination ports", data, port_series, marks("fig1")
        ),
        "fig2": _figure(
            "fig2", "Daily packets from the top 5 source regions", data, region_series, marks("fig2")
        ),
        "fig3": _figure(
            "fig3",
            "Daily Mirai packets",
            data,
            [Series("mirai", "Mirai packets", mirai_total)],
            marks("fig3"),
        ),
    }
    m_share, m_order = _shares(data.mirai_sources)
    a_share, a_order = _shares(data.region_sources)
    rows_keys = list(dict.fromkeys(m_order[:10] + a_order[:10] + ([focus] if focus in a_share else [])))
    rows = [(data.region_label(k), m_share.get(k, 0.0), a_share.get(k, 0.0)) for k in rows_keys]
    mirai_ranks = {
        "mirai": m_order.index(focus) + 1 if focus in m_order else None,
        "all": a_order.index(focus) + 1 if focus in a_order else None,
    }
    figures["fig4"] = Figure(
        "fig4",
        "Share of unique source addresses by region: Mirai packets and all packets",
        paired_bars("fig4", "Share of unique sources", rows, ("Mirai packets", "All packets"), focus),
        {
            "mirai_sources": data.mirai_sources,
            "all_sources": data.region_sources,
            "focus_region": focus,
            "focus_rank": mirai_ranks,
        },
    )
    figures["fig5"] = _figure(
        "fig5",
        "Daily Mirai packets, top 5 source regions",
        data,
        [data.mirai[k] for k in mirai_top],
        marks("fig5"),
    )
    focus_series = data.mirai.get(focus, Series(focus, data.region_label(focus), np.zeros(len(days))))
    figures["fig6"] = _figure(
        "fig6", f"Daily Mirai packets from {focus_series.label}", data, [focus_series], marks("fig6")
    )
    figures["fig7"] = _figure(
        "fig7", "Daily backscatter packets (DoS victims replying)", data, [bs], marks("fig7")
    )
    figures.update(extra_figs)
    return Report(data, focus, top_ports, top_regions, figures, events, mirai_ranks)


def report_json(report: Report) -> dict[str, Any]:
    """Every figure of the report as JSON-ready data."""
    d = report.data

    def ranked(rows: list[Ranked]) -> list[dict[str, Any]]:
        return [
            {
                "rank": r.rank,
                "key": r.key,
                "label": r.label,
                "packets": r.packets,
                "share": round(r.share, 5),
                "previous_rank": r.previous_rank,
            }
            for r in rows
        ]

    return {
        "format": "darkscope.report/1",
        "quarter": d.quarter,
        "previous_quarter": d.previous,
        "sensor": d.sensor,
        "focus_region": report.focus_region,
        "first_day": d.days[0].isoformat(),
        "last_day": d.days[-1].isoformat(),
        "packets": int(d.total.sum()),
        "daily_packets": [int(v) for v in d.total],
        "top5": {"ports": ranked(report.top_ports), "regions": ranked(report.top_regions)},
        "figures": {k: {"title": f.title, **f.data} for k, f in report.figures.items()},
        "events": [e.to_dict() for e in report.events],
        "backscatter": {
            "episodes": len(d.episodes),
            "victims": len({e.victim for e in d.episodes}),
            "list": [
                {
                    "victim": e.victim,
                    "region": e.region,
                    "start": e.start.isoformat(),
                    "end": e.end.isoformat(),
                    "packets": e.packets,
                    "protocols": e.protocols,
                }
                for e in d.episodes
            ],
        },
        "health": [
            {
                "sensor": h.sensor,
                "days_with_data": h.days_with_data,
                "days_in_quarter": len(d.days),
                "packets": h.packets,
                "captured": h.captured,
                "dropped": h.dropped,
                "monitored_addresses": h.monitored_addresses,
                "packets_per_address_day": h.per_address_day,
            }
            for h in d.health
        ],
    }


def render_html(report: Report, generated: datetime | None = None) -> str:
    """The self-contained HTML page of the report."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["thousands"] = lambda v: f"{int(v):,}"
    return env.get_template("report.html.j2").render(
        r=report,
        d=report.data,
        generated=(generated or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC"),
        extra_figures=[f for k, f in report.figures.items() if k.startswith("fig-mirai-")],
    )


def top5_tables(report: Report) -> str:
    """Chart 1 and Chart 2 as plain text, for a terminal."""
    lines = []
    for title, rows in (
        ("Top 5 destination ports", report.top_ports),
        ("Top 5 source regions", report.top_regions),
    ):
        lines.append(f"{title} ({report.data.quarter}; previous quarter {report.data.previous})")
        lines.append(f"  {'rank':>4}  {'':32} {'packets':>12} {'share':>7}  previous")
        for r in rows:
            prev = str(r.previous_rank) if r.previous_rank else "-"
            lines.append(f"  {r.rank:>4}  {r.label:32} {r.packets:>12,} {r.share:>7.1%}  {prev:>8}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_report(
    store: Queryable,
    quarter: str,
    out_dir: Path,
    sensor: str | None = None,
    focus_region: str = "JP",
    params: EventParams | None = None,
) -> ReportPaths:
    """Read ``quarter`` from the store and write its HTML and JSON into ``out_dir``."""
    report = build_report(load_quarter(store, quarter, sensor), focus_region, params)
    return save_report(report, out_dir)


def save_report(report: Report, out_dir: Path) -> ReportPaths:
    """Write a built report's HTML and JSON into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"report-{report.data.quarter}" + (f"-{report.data.sensor}" if report.data.sensor else "")
    html = out_dir / f"{stem}.html"
    js = out_dir / f"{stem}.json"
    html.write_text(render_html(report), encoding="utf-8")
    js.write_text(json.dumps(report_json(report), indent=1) + "\n", encoding="utf-8")
    logger.info("report written: %s, %s", html, js)
    return ReportPaths(html, js, top5_tables(report))
