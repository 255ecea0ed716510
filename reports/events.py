"""Events of note, detected from the quarter's daily series and written as dated sentences.

Every percentage a sentence gives comes from the weekly averages the chart draws (the centred
7-day mean, ``charts.moving_average``), and the sentence names the two weeks compared; the
event keeps both numbers (``Event.compared``) so that a reader of the JSON can recompute it.

- ``surge`` / ``drop``: a sustained level change (``changes.detect_changes``: optimal
  segmentation of log counts), the week before against the week after; a change followed by a
  trend the same way runs to where the weekly average stops moving that way. Also ``surge``
  from the quarter's first day when a series starts raised and falls back (and that fall is
  not already told as a ``drop``);
- ``burst`` / ``dip``: a change of at most a few days: the peak day against the week before;
- ``trend``: a sustained rise or fall, dated where the slope sets in, ending where the weekly
  average stops moving that way;
- ``rank_swap``: two of a top 5 whose weekly averages cross and stay crossed ``swap_days`` days;
- ``new_entry``: a top-5 entry that was not in the previous quarter's top 5 (the tables show it).

``reports.ranking`` ranks events; ``reports.victims`` aggregates backscatter per DoS victim.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import combinations

import numpy as np
import numpy.typing as npt

from reports.changes import ChangeParams, Fit, detect_changes
from reports.charts import moving_average
from reports.series import Ranked, Series

__all__ = [
    "Event",
    "EventParams",
    "Watched",
    "Point",
    "new_entries",
    "rank_swaps",
    "series_events",
    "week",
]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class EventParams:
    """Thresholds of the event detectors."""

    changes: ChangeParams = field(default_factory=ChangeParams)
    swap_days: int = 7  # a new order must hold this many days, and the old one before it
    elevated_min: float = 0.15  # log ratio of a raised start over the two weeks after it
    top_episodes: int = 5  # backscatter victims listed
    min_visible: float = 0.1  # |log ratio| of the weekly averages below which a change is not told
    main_events: int = 8  # events in the main section; the rest go to the appendix


@dataclass(frozen=True)
class Point:
    """One value a sentence quotes: ``series[of][index of day]`` in the JSON."""

    day: date
    of: str  # 'weekly_average' or 'daily'
    value: float
    window: tuple[date, date] | None = None  # the days a weekly average covers (fewer at the ends)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        out: dict[str, object] = {"date": self.day.isoformat(), "of": self.of, "value": round(self.value, 1)}
        if self.window:
            out["window"] = [self.window[0].isoformat(), self.window[1].isoformat()]
        return out


@dataclass(frozen=True)
class Event:
    """One event of note: what, about whom, from when, the numbers it quotes, its chart."""

    kind: str
    subject: str  # 'port:23/tcp', 'region:KR', 'mirai:KR', 'mirai', 'region:RU>CN', ...
    start: date
    end: date | None
    change: float  # relative change (0.5 = +50%): ``compared[1] / compared[0] - 1``
    text: str
    figure: str  # id of the chart in the HTML
    series: str = ""  # key of the series in the JSON's ``series`` (the first of a swap)
    compared: tuple[Point, ...] = ()  # (base, value): the two numbers the percentage comes from
    score: float = 0.0  # significance: packets/day concerned x |log change|
    rank: int | None = None
    consequences: tuple[Event, ...] = ()  # same-day changes told in the same sentence
    other: str = ""  # a swap's second series
    name: str = ""  # how a sentence names the series: 'packets to 23/TCP (telnet)'

    @staticmethod
    def week_of(p: Point) -> str:
        """The days the weekly average of ``p`` covers: 'Apr 28-May 4'."""
        a, b = p.window or (p.day - timedelta(days=3), p.day + timedelta(days=3))
        return f"{_d(a)}-{b.day}" if a.month == b.month else f"{_d(a)}-{_d(b)}"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "kind": self.kind,
            "subject": self.subject,
            "series": self.series,
            "other_series": self.other or None,
            "start": self.start.isoformat(),
            "end": self.end.isoformat() if self.end else None,
            "change_pct": round(100 * self.change, 1),
            "compared": [p.to_dict() for p in self.compared],
            "rank": self.rank,
            "score": round(self.score, 1),
            "text": self.text,
            "figure": self.figure,
            "consequences": [c.to_dict() for c in self.consequences],
        }


@dataclass(frozen=True)
class Watched:
    """A daily series the detectors watch: its subject, how sentences name it, its chart."""

    subject: str
    name: str  # 'packets to 23/TCP (telnet)', 'Mirai packets from South Korea (KR)'
    daily: F64
    figure: str


def _d(day: date) -> str:
    return f"{day:%b} {day.day}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def week(days: Sequence[date], i: int) -> str:
    """'Apr 28-May 4': the seven days the centred weekly average at ``i`` covers."""
    a, b = days[max(i - 3, 0)], days[min(i + 3, len(days) - 1)]
    return f"{_d(a)}-{b.day}" if a.month == b.month else f"{_d(a)}-{_d(b)}"


def _clamp(i: int, n: int) -> int:
    return min(max(i, 3), max(n - 4, 3))


def _run_end(wa: F64, i0: int, up: bool, patience: int = 28) -> int:
    """Where a weekly average that moves up (or down) from ``i0`` stops: its last new extreme
    before ``patience`` days without one."""
    n = len(wa)
    best = _clamp(i0 + 7, n)
    for k in range(best, n - 3):
        if (wa[k] > wa[best]) if up else (wa[k] < wa[best]):
            best = k
        elif k - best > patience:
            break
    return best


def _avg(days: Sequence[date], wa: F64, i: int) -> Point:
    """The weekly average at day ``i``, with the days it covers."""
    window = (days[max(i - 3, 0)], days[min(i + 3, len(days) - 1)])
    return Point(days[i], "weekly_average", float(wa[i]), window)


def _quote(wa: F64, days: Sequence[date], i0: int, i1: int) -> tuple[Point, Point, str]:
    """The two weekly averages compared, and how a sentence names them."""
    a, b = float(wa[i0]), float(wa[i1])
    text = (
        f"weekly average {a:,.0f} a day ({week(days, i0)}) to {b:,.0f} ({week(days, i1)}), "
        f"{b / max(a, 1e-9) - 1:+.0%}"
    )
    return _avg(days, wa, i0), _avg(days, wa, i1), text


def _score(a: float, b: float) -> float:
    return max(a, b) * abs(float(np.log((b + 1) / (a + 1))))


def series_events(w: Watched, days: Sequence[date], params: EventParams | None = None) -> list[Event]:
    """Surges, drops, bursts, dips and trends of one series, each quoting its weekly averages.

    A jump followed by a trend the same way is told once, to where its weekly average stops
    moving that way; a jump too small to see on the weekly average is not told."""
    p = params or EventParams()
    fit = detect_changes(w.daily, p.changes)
    wa = moving_average(w.daily)
    n = len(days)
    out: list[Event] = []
    changes = list(fit.changes)
    trends = [c for c in changes if c.kind == "trend"]
    absorbed: set[int] = set()
    raised_end = _raised_start(w, days, fit, p)
    for c in changes:
        up = c.effect > 0
        if c.kind == "trend" and id(c) in absorbed:
            continue
        if c.kind == "pulse":
            i0 = _clamp(c.start - 4, n)
            peak = c.start + int(np.argmax(w.daily[c.start : c.end + 1] * (1 if up else -1)))
            base, val = float(wa[i0]), float(w.daily[peak])
            rel = val / max(base, 1e-9) - 1
            what = "a short burst" if up else "a short dip"
            span = _d(days[c.start]) if c.start == c.end else f"{_d(days[c.start])} to {_d(days[c.end])}"
            text = (
                f"{_cap(w.name)}: {what} from {span}, {val:,.0f} on {_d(days[peak])} against a weekly "
                f"average of {base:,.0f} a day ({week(days, i0)}), {rel:+.0%}."
            )
            pts = (_avg(days, wa, i0), Point(days[peak], "daily", val))
            kind = "burst" if up else "dip"
            out.append(
                Event(
                    kind,
                    w.subject,
                    days[c.start],
                    days[c.end],
                    rel,
                    text,
                    w.figure,
                    w.subject,
                    pts,
                    _score(base, val) * (c.end - c.start + 1) / 7,
                    name=w.name,
                )
            )
            continue
        start = c.start
        if c.kind == "trend" and raised_end is not None and up and start <= raised_end[0] + 2:
            # Not rising while the raised start falls back: from the weekly average's low after it.
            lo = raised_end[0] + 1
            start = min(lo + int(np.argmin(wa[lo : min(lo + 21, n - 4)])) + 4, n - 8)
        i0 = _clamp(start - 4, n)
        follow = next(
            (
                t
                for t in trends
                if c.kind == "jump" and t.effect * c.effect > 0 and abs(t.start - c.start) <= 3
            ),
            None,
        )
        if follow is not None:
            absorbed.add(id(follow))
        if c.kind == "trend" or follow is not None:
            i1 = _run_end(wa, i0, up)
            for t in trends:  # a later trend the same way inside this run is the same run
                if t is not c and t.effect * c.effect > 0 and start < t.start <= i1:
                    absorbed.add(id(t))
        else:  # the weeks either side of the jump; near the quarter's end, the days left
            i0, i1 = max(start - 4, 0), min(start + 3, n - 1)
        if i1 <= i0:
            continue
        b0, b1, quoted = _quote(wa, days, i0, i1)
        rel = b1.value / max(b0.value, 1e-9) - 1
        if abs(np.log((b1.value + 1) / (b0.value + 1))) < p.min_visible:
            continue
        verb = (
            ("rose" if up else "fell")
            if c.kind == "jump"
            else ("kept increasing" if up else "kept decreasing")
        )
        since = "from the start of the quarter" if start == 0 else f"from {_d(days[start])}"
        whole = start == 0 and i1 >= n - 4
        if c.kind == "jump" and follow is None:
            text = f"{_cap(w.name)} {verb} {since} ({quoted})."
            end: date | None = None
        else:
            more = "rising" if up else "falling"
            until = "the end of the quarter" if i1 >= n - 4 else _d(days[i1])
            lead = f"{verb} {since} and kept {more}" if c.kind == "jump" else f"{verb} {since}"
            span = f"{verb} throughout the quarter" if whole else f"{lead} until {until}"
            text = f"{_cap(w.name)} {span} ({quoted})."
            end = days[i1]
        kind = ("surge" if up else "drop") if c.kind == "jump" else "trend"
        out.append(
            Event(
                kind,
                w.subject,
                days[start],
                end,
                rel,
                text,
                w.figure,
                w.subject,
                (b0, b1),
                _score(b0.value, b1.value),
                name=w.name,
            )
        )
    if raised_end is not None:
        tau, told = raised_end
        if not any(e.kind == "drop" and abs((e.start - days[tau]).days) <= 1 for e in out):
            out.append(told)
    return sorted(out, key=lambda e: (e.start, e.kind))


def _raised_start(w: Watched, days: Sequence[date], fit: Fit, p: EventParams) -> tuple[int, Event] | None:
    """A series that starts the quarter raised and falls back (its first segment flat and
    above the two weeks after it): the last raised day, and the event telling it."""
    head = fit.segments[0] if len(fit.segments) > 1 else None
    if head is None or head.days < 7 or abs(head.slope * head.days) >= p.changes.min_trend / 2:
        return None
    n = len(days)
    tau = head.end + 1
    wa = moving_average(w.daily)
    i0, i1 = _clamp(tau + 3, n), 3  # base: the week after; value: the quarter's first week
    after, before = float(wa[i0]), float(wa[i1])
    if np.log((before + 1) / (after + 1)) < p.elevated_min:
        return None
    rel = before / max(after, 1e-9) - 1
    text = (
        f"{_cap(w.name)} were raised from the start of the quarter until {_d(days[tau - 1])}: "
        f"a weekly average of {before:,.0f} a day ({week(days, i1)}) against {after:,.0f} "
        f"({week(days, i0)}), {rel:+.0%}."
    )
    pts = (_avg(days, wa, i0), _avg(days, wa, i1))
    ev = Event(
        "surge",
        w.subject,
        days[0],
        days[tau - 1],
        rel,
        text,
        w.figure,
        w.subject,
        pts,
        _score(after, before),
        name=w.name,
    )
    return tau - 1, ev


def _crossings(diff: F64, hold: int) -> list[int]:
    """Days where ``diff`` turns positive (or negative) and keeps that sign ``hold`` days, having
    kept the other sign the ``hold`` days before."""
    sign = np.sign(diff)
    out = []
    for t in range(hold, len(diff) - hold + 1):
        before, after = sign[t - hold : t], sign[t : t + hold]
        if after[0] != 0 and np.all(after == after[0]) and np.all(before == -after[0]):
            out.append(t)
    return out


def rank_swaps(
    prefix: str,
    series: Sequence[Series],
    days: Sequence[date],
    figure: str,
    params: EventParams | None = None,
) -> list[Event]:
    """Pairs of a top 5 whose weekly averages (as the chart draws them) cross and stay crossed
    ``swap_days`` days, having been in the other order as long before."""
    p = params or EventParams()
    out = []
    for a, b in combinations(series, 2):
        wa, wb = moving_average(a.daily), moving_average(b.daily)
        for t in _crossings(wa - wb, p.swap_days):
            (up, w_up), (down, w_down) = ((a, wa), (b, wb)) if wa[t] > wb[t] else ((b, wb), (a, wa))
            held = t + p.swap_days
            while held < len(days) and w_up[held] > w_down[held]:
                held += 1
            until = "the end of the quarter" if held >= len(days) else _d(days[held - 1])
            i = min(t + 3, len(days) - 1)
            base, val = float(w_down[i]), float(w_up[i])
            text = (
                f"{up.label} overtook {down.label} from {_d(days[t])}: the weekly averages cross "
                f"there and stay crossed until {until} ({val:,.0f} against {base:,.0f} a day, "
                f"{week(days, i)})."
            )
            pts = (_avg(days, w_down, i), _avg(days, w_up, i))
            out.append(
                Event(
                    "rank_swap",
                    f"{prefix}:{up.key}>{down.key}",
                    days[t],
                    days[held - 1],
                    val / max(base, 1e-9) - 1,
                    text,
                    figure,
                    f"{prefix}:{up.key}",
                    pts,
                    _score(base, val),
                    other=f"{prefix}:{down.key}",
                )
            )
    return sorted(out, key=lambda e: e.start)


def new_entries(
    prefix: str, ranked: Sequence[Ranked], previous_quarter: str, days: Sequence[date], figure: str
) -> list[Event]:
    """Top-5 entries that were not in the previous quarter's top 5 (rank given when known)."""
    out = []
    for r in ranked:
        if r.previous_rank is not None and r.previous_rank <= 5:
            continue
        before = f"rank {r.previous_rank}" if r.previous_rank else "not seen"
        text = f"{r.label} entered the top 5 at rank {r.rank} ({before} in {previous_quarter})."
        out.append(Event("new_entry", f"{prefix}:{r.key}", days[0], None, 0.0, text, figure))
    return out
