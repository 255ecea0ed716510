"""The report's HTML page (Jinja template ``templates/report.html.j2``) and its terminal tables."""

from __future__ import annotations

from datetime import datetime

import jinja2

from core import __version__
from reports.health import HEALTH_FIGURE
from reports.prose import figure_paragraph, mirai_comparison, overview
from reports.report import Report, shares
from reports.victims import victims

__all__ = ["figure_numbers", "render_html", "top5_tables"]


def figure_numbers(report: Report) -> dict[str, int]:
    """Figure number of each chart id, in the order the page shows them: fig1..fig6, the extra
    Mirai charts of section 2.1, backscatter (``fig7``), then the packets stored per sensor
    (``fig-health``, in the health section)."""
    out = {f"fig{i}": i for i in range(1, 7)}
    for k in report.figures:
        if k.startswith("fig-mirai-"):
            out[k] = len(out) + 1
    out["fig7"] = len(out) + 1
    if HEALTH_FIGURE in report.figures:
        out[HEALTH_FIGURE] = len(out) + 1
    return out


def _prose(report: Report) -> dict[str, str]:
    d, events = report.data, report.events
    main = report.main_events
    out = {"overview": overview(report.top_ports, report.top_regions, main)}
    leads = {
        "fig1": f"{report.top_ports[0].label} received the most packets." if report.top_ports else "",
        "fig2": f"{report.top_regions[0].label} sent the most packets." if report.top_regions else "",
        "fig3": f"{int(d.mirai_total.sum()):,} packets carried the Mirai fingerprint this quarter.",
        "fig5": "The timing of the changes differs by region.",
        "fig6": "",
        "fig7": f"{int(d.backscatter.sum()):,} backscatter packets this quarter.",
    }
    leads.update({k: "" for k in report.figures if k.startswith("fig-mirai-")})
    for fid, lead in leads.items():
        out[fid] = figure_paragraph(fid, events, lead)
    _, m_order = shares(d.mirai_sources)
    _, a_order = shares(d.region_sources)
    labels = {k: d.region_label(k) for k in set(m_order) | set(a_order) | {report.focus_region}}
    out["fig4"] = mirai_comparison(m_order, a_order, labels, report.focus_region)
    return out


def render_html(report: Report, generated: datetime | None = None) -> str:
    """The self-contained HTML page of the report."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["thousands"] = lambda v: f"{int(v):,}"
    env.filters["day"] = lambda v: f"{v:%b} {v.day}"
    return env.get_template("report.html.j2").render(
        r=report,
        d=report.data,
        generated=(generated or report.generated).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        prose=_prose(report),
        fignum=figure_numbers(report),
        victims=victims(report.data.episodes, report.params.top_episodes),
        unknown='<span class="unknown">unknown</span>',
        extra_figures=[f for k, f in report.figures.items() if k.startswith("fig-mirai-")],
        health_figure=report.figures.get(HEALTH_FIGURE),
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
