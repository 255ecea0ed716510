"""The report's paragraphs, written from its ranked events and tables (pure functions).

``figure_paragraph`` tells what a figure shows (its largest series, then the events told on
it, by rank); ``mirai_comparison`` compares Mirai sources and all sources by region in words,
as the reference report does under its Figure 4; ``overview`` opens the report.
"""

from __future__ import annotations

from collections.abc import Sequence

from reports.events import Event
from reports.series import Ranked

__all__ = ["figure_paragraph", "mirai_comparison", "ordinal", "overview"]


def ordinal(n: int) -> str:
    """1 -> '1st', 12 -> '12th', 23 -> '23rd'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _names(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _first_clause(e: Event) -> str:
    return e.text.split("; with it, ")[0].rstrip(".")


def figure_paragraph(fig: str, events: Sequence[Event], lead: str = "", limit: int = 4) -> str:
    """A paragraph for figure ``fig``: ``lead``, then its events by rank (their own sentence, or
    how the figure's series followed another event's cause)."""
    out = [lead] if lead else []
    told = 0
    for e in sorted(events, key=lambda e: e.rank or 0):
        if told >= limit:
            break
        if e.figure == fig:
            out.append(f"{_first_clause(e)} (event {e.rank}).")
            told += 1
            continue
        here = [c for c in e.consequences if c.figure == fig and c.kind != "rank_swap"]
        if here:
            moved = _names([f"{c.name} {'rose' if c.change > 0 else 'fell'} ({c.change:+.0%})" for c in here])
            cause = e.name or e.subject
            out.append(f"From {e.start:%b} {e.start.day}, {moved} with {cause} (event {e.rank}).")
            told += 1
    if told == 0:
        out.append("No change of note was seen in these series this quarter.")
    return " ".join(out)


def mirai_comparison(
    mirai_order: Sequence[str], all_order: Sequence[str], label: dict[str, str], focus: str, top: int = 5
) -> str:
    """Mirai sources against all sources by region, in words (regions ranked by unique sources)."""
    if not mirai_order:
        return "No packet with the Mirai fingerprint was seen this quarter."
    m, a = list(mirai_order[:top]), list(all_order[:top])
    both = [label[k] for k in m if k in a]
    only_all = [label[k] for k in a if k not in m]
    only_mirai = [label[k] for k in m if k not in a]
    parts = []
    if both:
        parts.append(f"{_names(both)} ranked in the top {top} for both")
    if only_all:
        parts.append(f"{_names(only_all)} stood out only among all sources")
    if only_mirai:
        parts.append(f"{_names(only_mirai)} only among Mirai sources")
    text = "Comparing unique source addresses by region, " + ", while ".join(parts) + "."
    if focus in mirai_order or focus in all_order:
        fm = ordinal(mirai_order.index(focus) + 1) if focus in mirai_order else "unranked (no Mirai source)"
        fa = ordinal(all_order.index(focus) + 1) if focus in all_order else "unranked"
        text += f" {label.get(focus, focus)} ranked {fm} for Mirai sources and {fa} for all sources."
    return text


def overview(top_ports: Sequence[Ranked], top_regions: Sequence[Ranked], main: Sequence[Event]) -> str:
    """The opening paragraph: the quarter's leaders and its main events in a line each."""
    parts = []
    if top_ports:
        p = top_ports[0]
        parts.append(f"{p.label} received the most packets ({p.share:.0%} of the quarter's)")
    if top_regions:
        r = top_regions[0]
        parts.append(f"{r.label} sent the most ({r.share:.0%})")
    text = "; ".join(parts) + "." if parts else ""
    if main:
        heads = _names([f"{(e.name or e.subject)} ({e.start:%b} {e.start.day})" for e in main[:3]])
        text += f" The most significant events of the quarter concern {heads}; section 2 lists {len(main)}."
    else:
        text += " Nothing of note happened this quarter: no series changed beyond its day-to-day noise."
    return text.strip()
