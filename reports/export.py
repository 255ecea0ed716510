"""The report's JSON: every number it shows, with the series behind each event's numbers."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from core import __version__
from reports.charts import moving_average
from reports.events import new_entries
from reports.health import HEALTH_FIGURE, daily_or_null
from reports.report import Report, daily_by_key, series_labels
from reports.series import Ranked
from reports.victims import victims

__all__ = ["report_json"]


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

    daily = daily_by_key(d)
    labels = series_labels(d)
    figure_of = {m.series: m.figure for e in report.events for m in (e, *e.consequences) if m.series}
    keys = [k for k in daily if k in labels]
    wa = {k: moving_average(daily[k]) for k in keys}
    dates = [x.isoformat() for x in d.days]
    return {
        "format": "darkscope.report/2",
        "tool": {"name": "darkscope", "version": __version__},
        "generated": report.generated.isoformat(timespec="seconds"),
        "thresholds": asdict(report.params),
        "weekly_average": "centred 7-day mean (3 days either side; shorter at the quarter's ends)",
        "quarter": d.quarter,
        "previous_quarter": d.previous,
        "sensor": d.sensor,
        "sensor_group": d.sensor_group,
        "unregistered": [{"sensor": name, "packets": n} for name, n in d.unregistered],
        "focus_region": report.focus_region,
        "first_day": d.days[0].isoformat(),
        "last_day": d.days[-1].isoformat(),
        "packets": int(d.total.sum()),
        "daily_packets": [int(v) for v in d.total],
        "top5": {"ports": ranked(report.top_ports), "regions": ranked(report.top_regions)},
        "figures": {k: {"title": f.title, **f.data} for k, f in report.figures.items()},
        "series": {
            k: {
                "label": labels[k],
                "figure": figure_of.get(k),
                "dates": dates,
                "daily": [int(v) for v in daily[k]],
                "weekly_average": [round(float(v), 1) for v in wa[k]],
            }
            for k in keys
        },
        "events": [e.to_dict() for e in report.events],
        "main_events": report.params.main_events,
        "nothing_of_note": not report.events,
        "new_entries": [
            e.to_dict()
            for prefix, rows in (("port", report.top_ports), ("region", report.top_regions))
            if (d.previous_ports if prefix == "port" else d.previous_regions)
            for e in new_entries(prefix, rows, d.previous, d.days, "fig1" if prefix == "port" else "fig2")
        ],
        "backscatter": {
            "episodes": len(d.episodes),
            "victims": len({e.victim for e in d.episodes}),
            "top_victims": [v.to_dict() for v in victims(d.episodes, report.params.top_episodes)],
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
        "mirai_asns": [
            {
                "region": a.region,
                "asn": a.asn or None,  # 0: no ASN database, or an address it does not cover
                "as_org": a.as_org or None,
                "sources": a.sources,
                "packets": a.packets,
            }
            for a in d.mirai_asns
        ],
        "scanner_tools": {
            "by": "per-source verdict",
            "tools": [{"tool": t.tool, "sources": t.sources, "packets": t.packets} for t in d.tools],
        },
        "health": [
            {
                "sensor": h.sensor,
                "days_with_data": h.days_with_data,
                "days_in_quarter": len(d.days),
                "packets": h.packets,
                "captured": h.captured or None,  # no health record: unknown, not 0
                "dropped": h.dropped if h.captured else None,
                "monitored_addresses": h.monitored_addresses or None,
                "packets_per_address_day": h.per_address_day,
                "figure": HEALTH_FIGURE,
                "dates": dates,
                "daily": daily_or_null(h.daily),  # null: no data that day (not 0 packets)
            }
            for h in d.health
        ],
    }
