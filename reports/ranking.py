"""Events ranked by significance, one cause told once with the same days' consequences.

Significance is the traffic an event concerns (packets a day, the larger of the two weekly
averages it compares) times the size of its change (|log ratio|). Changes the same way that
start within ``SAME_DAYS`` days of each other are told as one event: the one with the largest
relative change is the cause (China's Mirai drop), the others its consequences in the same
sentence (packets from China, to 23/TCP, all Mirai packets); a rank swap joins the event of the
series that moved. The first ``main`` events by significance form the main section.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date

import numpy as np
import numpy.typing as npt

from reports.charts import moving_average
from reports.events import Event

F64 = npt.NDArray[np.float64]

__all__ = ["SAME_DAYS", "rank_events"]

SAME_DAYS = 2
WITH = "; with it, "
AGGREGATES = {"mirai": "mirai"}  # prefix of a part's series -> its aggregate's series
WITH_AGGREGATE = 0.35  # |log| of a part's change over its aggregate's: it moved with it
SWAP_DAYS = 4  # weekly averages of close series cross a few days after the change that swaps them
TOLD = ("surge", "drop", "trend", "burst", "dip", "rank_swap")


def _up(e: Event) -> bool:
    return e.change > 0 if e.kind != "rank_swap" else True


def _raised(e: Event) -> bool:
    """A raised start: dated on the first day, it tells a fall back, not a rise on that day."""
    return e.kind == "surge" and e.end is not None and e.compared[0].day > e.compared[1].day


def _size(e: Event) -> float:
    return abs(float(np.log1p(max(e.change, -0.999))))


def _numbers(e: Event, cause: Event) -> str:
    """'+126%, 3,449 to 7,794 a day', naming the weeks compared where they are not the cause's."""
    a, b = e.compared
    same = [p.day for p in e.compared] == [p.day for p in cause.compared]
    weeks = "" if same else f", {e.week_of(a)} to {e.week_of(b)}"
    return f"{e.change:+.0%}, {a.value:,.0f} to {b.value:,.0f} a day{weeks}"


def _phrases(told: Sequence[Event], cause: Event) -> list[str]:
    """One phrase per consequence; the parts of one aggregate ('Mirai packets from ...') that
    moved the same way share one phrase."""
    out: list[str] = []
    swaps = [e.text.split(":")[0] for e in told if e.kind == "rank_swap"]
    groups: dict[tuple[str, bool], list[Event]] = {}
    for e in told:
        if e.kind == "rank_swap":
            continue
        head = e.name.split(" from ")[0] + " from " if " from " in e.name else e.name
        groups.setdefault((head, e.change > 0), []).append(e)
    for (head, up), members in groups.items():
        verb = "rose" if up else "fell"
        if len(members) == 1 or not head.endswith(" from "):
            out += [f"{e.name} {verb} ({_numbers(e, cause)})" for e in members]
            continue
        places = [f"{e.name[len(head) :]} ({_numbers(e, cause)})" for e in members]
        out.append(f"{head}{_names(places)} {verb}")
    return out + swaps


def _names(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _same(e: Event, cause: Event) -> bool:
    return e.kind == "trend" and e.series == cause.series


def _merge(cause: Event, rest: list[Event]) -> Event:
    if not rest:
        return cause
    inner = tuple(c for e in rest for c in (e, *e.consequences))
    told = sorted(cause.consequences + inner, key=lambda e: -e.score)
    text = cause.text.split("; ")[0].rstrip(".")
    for e in (e for e in told if _same(e, cause)):
        verb = "increasing" if e.change > 0 else "decreasing"
        a, b = e.compared
        text += (
            f"; then it kept {verb} from {e.start:%b} {e.start.day} ({e.change:+.0%}, "
            f"{a.value:,.0f} to {b.value:,.0f} a day, {e.week_of(a)} to {e.week_of(b)})"
        )
    parts = _phrases([e for e in told if not _same(e, cause)], cause)
    if parts:
        text += WITH + _names(parts)
    # The same packets are counted in each member (Mirai from China in China, in 23/TCP...):
    # the cluster concerns as much traffic as its largest member, not their sum.
    score = max([cause.score, *(e.score for e in rest)])
    return replace(cause, text=text + ".", consequences=tuple(told), score=score)


def _clusters(events: list[Event]) -> list[Event]:
    moves = sorted((e for e in events if e.kind != "rank_swap"), key=lambda e: (not _raised(e), -_size(e)))
    swaps = [e for e in events if e.kind == "rank_swap"]
    taken: set[int] = set()
    out = []
    for cause in moves:
        if id(cause) in taken:
            continue
        taken.add(id(cause))
        if cause.kind in ("burst", "dip"):
            out.append(cause)
            continue
        if _raised(cause):  # a raised start, then the same series' next trend: one story
            later = [
                e for e in moves if id(e) not in taken and e.series == cause.series and e.kind == "trend"
            ]
            taken.update(id(e) for e in later[:1])
            out.append(_merge(cause, later[:1]))
            continue
        rest = [
            e
            for e in moves
            if id(e) not in taken
            and e.kind not in ("burst", "dip")
            and not _raised(e)
            and _up(e) == _up(cause)
            and abs((e.start - cause.start).days) <= SAME_DAYS
        ]
        members = [cause, *rest]
        for s in swaps:
            if id(s) in taken or abs((s.start - cause.start).days) > SWAP_DAYS:
                continue
            if any(
                (m.series == s.series and m.change > 0) or (m.series == s.other and m.change < 0)
                for m in members
            ):
                rest.append(s)
        taken.update(id(e) for e in rest)
        out.append(_merge(cause, rest))
    out += [s for s in swaps if id(s) not in taken]
    return out


def _with_aggregate(events: list[Event], days: Sequence[date], daily: Mapping[str, F64]) -> list[Event]:
    """Fold a part's change into its aggregate's (Mirai from Vietnam into all Mirai) where the
    part moved with the aggregate: over the weeks the aggregate's event compares, the part's
    weekly average changed by the same factor within ``WITH_AGGREGATE``."""
    index = {d: i for i, d in enumerate(days)}
    out = []
    folded: dict[int, list[Event]] = {}
    aggregates = [
        e for e in events if e.kind in ("surge", "drop", "trend") and e.series in AGGREGATES.values()
    ]
    for e in events:
        agg = AGGREGATES.get(e.series.split(":")[0]) if ":" in e.series else None
        host = None
        if agg and e.kind in ("surge", "drop", "trend") and agg in daily and not _raised(e):
            wa = moving_average(daily[agg])
            i0, i1 = (index[p.day] for p in e.compared)
            theirs = (wa[i1] + 1) / (wa[i0] + 1)
            mine = (e.compared[1].value + 1) / (e.compared[0].value + 1)
            if abs(float(np.log(mine / theirs))) < WITH_AGGREGATE:
                host = next(
                    (
                        a
                        for a in aggregates
                        if a.series == agg
                        and (a.change > 0) == (e.change > 0)
                        and not _raised(a)
                        and e.start <= (a.end or a.start)
                        and (e.end or e.start) >= a.start
                    ),
                    None,
                )
        if host is None:
            out.append(e)
        else:
            folded.setdefault(id(host), []).append(e)
    return [_merge(e, folded[id(e)]) if id(e) in folded else e for e in out]


def rank_events(
    events: Sequence[Event], days: Sequence[date] = (), daily: Mapping[str, F64] | None = None
) -> list[Event]:
    """The events to tell, one per cause, ranked 1.. by significance (largest first).

    ``daily``: the series by key (``Event.series``), to tell which parts moved with their
    aggregate."""
    told = [e for e in events if e.kind in TOLD]
    merged = sorted(
        _clusters(_with_aggregate(told, days, daily or {})), key=lambda e: (-e.score, e.start, e.subject)
    )
    return [replace(e, rank=i + 1) for i, e in enumerate(merged)]
