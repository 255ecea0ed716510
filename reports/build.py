"""The quarterly report: QuarterData -> figures, tables and events -> one HTML file and one JSON.

``build_report`` is pure (data in, ``Report`` out); ``write_report`` reads the store and writes
``report-<quarter>[-<sensor>].html`` (``reports.render``) and ``.json`` (``reports.export``);
``top5_tables`` gives the two top-5 tables as text for a terminal.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from reports.charts import Line, line_chart, moving_average, paired_bars
from reports.events import Event, EventParams, Watched, rank_swaps, series_events
from reports.export import report_json
from reports.health import health_figure
from reports.notes import render_notes
from reports.queries import Queryable, load_quarter
from reports.ranking import rank_events
from reports.render import render_html, top5_tables
from reports.report import Figure, Report, ReportPaths, daily_by_key, shares
from reports.series import QuarterData, Series, rank, top_with_previous

__all__ = [
    "Figure",
    "Report",
    "ReportPaths",
    "build_report",
    "render_html",
    "report_json",
    "save_report",
    "top5_tables",
    "write_report",
]

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
MIRAI_WATCH_SHARE = 0.05  # Mirai regions outside the top 5 watched for events from this share


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


def _desc(days: list[Any], series: list[Series], marks: list[tuple[Any, int]]) -> str:
    """The key numbers of a line chart, for its SVG ``<desc>``."""
    parts = []
    for s in series:
        wa = moving_average(s.daily)
        if len(wa) >= 7:
            parts.append(
                f"{s.label}: {s.total:,} packets; weekly average {wa[3]:,.0f} a day in the first week, "
                f"{wa[-4]:,.0f} in the last"
            )
    text = "; ".join(parts) + "."
    if marks:
        text += " Events marked: " + ", ".join(f"{n} ({d:%b} {d.day})" for d, n in marks) + "."
    return text


def _figure(fid: str, title: str, data: QuarterData, series: list[Series], marks: list[Any]) -> Figure:
    desc = _desc(data.days, series, marks)
    svg = line_chart(fid, title, data.days, [Line(s.label, s.daily) for s in series], marks, desc)
    return Figure(fid, title, svg, _series_json(data.days, series))


def build_report(
    data: QuarterData,
    focus_region: str = "JP",
    params: EventParams | None = None,
    generated: datetime | None = None,
) -> Report:
    """Tables, figures and events of one quarter (pure but for ``generated``, default now)."""
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
    mirai_total = data.mirai_total
    events += series_events(Watched("mirai", "all Mirai packets", mirai_total, "fig3"), days, p)
    mirai_totals = {k: s.total for k, s in data.mirai.items()}
    mirai_top = rank(mirai_totals)[:5]
    all_mirai = sum(mirai_totals.values()) or 1
    watched = [
        k for k in rank(mirai_totals) if k in mirai_top or mirai_totals[k] >= MIRAI_WATCH_SHARE * all_mirai
    ]
    if focus in data.mirai and focus not in watched:
        watched.append(focus)
    extra_figs: dict[str, Series] = {}
    for k in watched:
        s = data.mirai[k]
        fid = "fig5" if k in mirai_top else "fig6" if k == focus else f"fig-mirai-{k.lower()}"
        found = series_events(Watched(f"mirai:{k}", f"Mirai packets from {s.label}", s.daily, fid), days, p)
        if found and fid.startswith("fig-mirai-"):
            extra_figs[fid] = s
        events += found
    bs = Series("backscatter", "Backscatter packets", data.backscatter)
    events += series_events(Watched("backscatter", "backscatter packets", data.backscatter, "fig7"), days, p)
    events = rank_events(events, days, daily_by_key(data))

    main = [e for e in events if e.rank is not None and e.rank <= p.main_events]

    def marks(fig: str) -> list[tuple[Any, int]]:
        """(date, number) of each main event told on ``fig`` (by its cause or a consequence)."""
        # One mark per event, on its date, on every figure where it or a consequence is told.
        found = [(e.start, e.rank or 0) for e in main if any(m.figure == fig for m in (e, *e.consequences))]
        return sorted(found)

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
    m_share, m_order = shares(data.mirai_sources)
    a_share, a_order = shares(data.region_sources)
    m_rank = {k: i + 1 for i, k in enumerate(m_order)}
    a_rank = {k: i + 1 for i, k in enumerate(a_order)}
    keys = set(m_order[:10] + a_order[:10] + ([focus] if focus in a_share else []))
    # Rows by their better rank of the two, so the regions that lead either ranking come first.
    rows_keys = sorted(
        keys, key=lambda k: (min(m_rank.get(k, 999), a_rank.get(k, 999)), m_rank.get(k, 999), k)
    )

    def row_name(k: str) -> str:
        return f"{data.region_label(k)} · #{m_rank.get(k, '-')} / #{a_rank.get(k, '-')}"

    rows = [(row_name(k), m_share.get(k, 0.0), a_share.get(k, 0.0)) for k in rows_keys]
    fig4_desc = (
        "Unique source addresses by region (Mirai rank / all rank): "
        + "; ".join(
            f"{data.region_label(k)} {m_share.get(k, 0.0):.1%} of Mirai sources, "
            f"{a_share.get(k, 0.0):.1%} of all"
            for k in rows_keys[:6]
        )
        + "."
    )
    mirai_ranks = {
        "mirai": m_order.index(focus) + 1 if focus in m_order else None,
        "all": a_order.index(focus) + 1 if focus in a_order else None,
    }
    figures["fig4"] = Figure(
        "fig4",
        "Share of unique source addresses by region: Mirai packets and all packets",
        paired_bars(
            "fig4",
            "Share of unique source addresses by region: Mirai packets and all packets",
            rows,
            ("Mirai packets (rank after #)", "All packets (rank after /)"),
            focus,
            fig4_desc,
        ),
        {
            "mirai_sources": data.mirai_sources,
            "all_sources": data.region_sources,
            "focus_region": focus,
            "focus_rank": mirai_ranks,
            "rows": [{"key": k, "mirai_rank": m_rank.get(k), "all_rank": a_rank.get(k)} for k in rows_keys],
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
    told_on = {m.figure for e in events for m in (e, *e.consequences)}
    for fid, s in extra_figs.items():  # charts of the events told on no other figure
        if fid in told_on:
            figures[fid] = _figure(fid, f"Daily Mirai packets from {s.label}", data, [s], marks(fid))
    health = health_figure(data)
    if health is not None:
        figures[health.id] = health
    return Report(
        data,
        focus,
        top_ports,
        top_regions,
        figures,
        events,
        mirai_ranks,
        params=p,
        generated=generated or datetime.now(UTC),
    )


def write_report(
    store: Queryable,
    quarter: str,
    out_dir: Path,
    sensor: str | None = None,
    focus_region: str = "JP",
    params: EventParams | None = None,
    notes: str = "",
    sensor_group: str | None = None,
) -> ReportPaths:
    """Read ``quarter`` from the store and write its HTML and JSON into ``out_dir``; ``notes``
    (Markdown) are the analyst's own sections; ``sensor_group`` keeps the sensors of one registry
    group."""
    data = load_quarter(store, quarter, sensor, focus_region, group=sensor_group)
    report = build_report(data, focus_region, params)
    report.notes = render_notes(notes) if notes.strip() else ""
    return save_report(report, out_dir)


def save_report(report: Report, out_dir: Path) -> ReportPaths:
    """Write a built report's HTML and JSON into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"report-{report.data.quarter}" + (f"-{report.data.sensor}" if report.data.sensor else "")
    stem += f"-group-{report.data.sensor_group}" if report.data.sensor_group else ""
    html = out_dir / f"{stem}.html"
    js = out_dir / f"{stem}.json"
    html.write_text(render_html(report), encoding="utf-8")
    js.write_text(json.dumps(report_json(report), indent=1) + "\n", encoding="utf-8")
    logger.info("report written: %s, %s", html, js)
    return ReportPaths(html, js, top5_tables(report))
