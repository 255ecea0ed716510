"""Events of note, detected from the quarter's daily series and written as dated sentences.

Kinds (each an ``Event`` with the chart it links to):

- ``surge`` / ``drop``: a sustained level change (``changes.detect_changes``: optimal
  segmentation of log counts); also ``surge`` from the quarter's first day when a series starts
  raised and falls back (its first change is a fall of >= ``elevated_min`` against the two weeks
  after it) where that fall is not already told as a ``drop``;
- ``burst`` / ``dip``: a change of at most a few days that returns to the level before;
- ``trend``: a sustained rise or fall (a sloped segment), dated where the slope sets in;
- ``rank_swap``: two of a top 5 change places for at least ``swap_days`` days (the segmented log
  ratio of the two series changes sign and keeps it on both sides);
- ``new_entry``: a top-5 entry that was not in the previous quarter's top 5;
- ``backscatter``: the largest DoS episodes seen through their backscatter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from itertools import combinations

import numpy as np
import numpy.typing as npt

from reports.changes import ChangeParams, detect_changes, noise_sigma, segment
from reports.series import Episode, Ranked, Series

__all__ = [
    "Event",
    "EventParams",
    "Watched",
    "backscatter_events",
    "new_entries",
    "rank_swaps",
    "series_events",
]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class EventParams:
    """Thresholds of the event detectors."""

    changes: ChangeParams = field(default_factory=ChangeParams)
    swap_days: int = 7  # a new order must hold this many days, and the old one before it
    elevated_min: float = 0.15  # log ratio of a raised start over the two weeks after it
    top_episodes: int = 5  # backscatter episodes listed


@dataclass(frozen=True)
class Event:
    """One event of note: what, about whom, from when, and the chart that shows it."""

    kind: str
    subject: str  # 'port:23/tcp', 'region:KR', 'mirai:KR', 'mirai', 'region:RU>CN', ...
    start: date
    end: date | None
    change: float  # relative change (0.5 = +50%); 0 when it does not apply
    text: str
    figure: str  # id of the chart in the HTML

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "kind": self.kind,
            "subject": self.subject,
            "start": self.start.isoformat(),
            "end": self.end.isoformat() if self.end else None,
            "change": round(self.change, 4),
            "text": self.text,
            "figure": self.figure,
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


def _pct(log_ratio: float) -> float:
    return float(np.expm1(log_ratio))


def series_events(w: Watched, days: Sequence[date], params: EventParams | None = None) -> list[Event]:
    """Surges, drops, bursts, dips and trends of one series."""
    p = params or EventParams()
    fit = detect_changes(w.daily, p.changes)
    out: list[Event] = []
    last = days[-1]
    for c in fit.changes:
        rel = _pct(c.effect)
        start, end = days[c.start], days[c.end]
        if c.kind == "jump":
            kind = "surge" if c.effect > 0 else "drop"
            verb = "rose" if c.effect > 0 else "fell"
            text = f"{_cap(w.name)} {verb} by {abs(rel):.0%} from {_d(start)}."
            out.append(Event(kind, w.subject, start, None, rel, text, w.figure))
        elif c.kind == "pulse":
            kind = "burst" if c.effect > 0 else "dip"
            what = "a short burst" if c.effect > 0 else "a short dip"
            span = _d(start) if c.start == c.end else f"{_d(start)} to {_d(end)}"
            text = f"{_cap(w.name)}: {what} ({rel:+.0%}) from {span}."
            out.append(Event(kind, w.subject, start, end, rel, text, w.figure))
        else:
            verb = "kept increasing" if c.effect > 0 else "kept decreasing"
            until = "the end of the quarter" if end == last else _d(end)
            text = (
                f"{_cap(w.name)} {verb} from {_d(start)} to {until} "
                f"({rel:+.0%} over the period, weekly averages)."
            )
            out.append(Event("trend", w.subject, start, end if end != last else None, rel, text, w.figure))
    # A raised start: the first segment is flat and above the two weeks that follow it.
    head = fit.segments[0] if len(fit.segments) > 1 else None
    if head is not None and head.days >= 7 and abs(head.slope * head.days) < p.changes.min_trend / 2:
        tau = head.end + 1
        before = float(np.mean(w.daily[:tau]))
        after = float(np.mean(w.daily[tau : tau + 14]))
        ratio = float(np.log((before + 1) / (after + 1)))
        # The same change-point, seen from after it, is a drop: tell it once, as the drop.
        told = any(e.kind == "drop" and abs((e.start - days[tau]).days) <= 1 for e in out)
        if ratio >= p.elevated_min and not told:
            end = days[tau - 1]
            text = (
                f"{_cap(w.name)} were raised from the start of the quarter until {_d(end)} "
                f"({_pct(ratio):+.0%} against the two weeks after)."
            )
            out.append(Event("surge", w.subject, days[0], end, _pct(ratio), text, w.figure))
    return sorted(out, key=lambda e: (e.start, e.kind))


def _crossings(fitted: F64, hold: int) -> list[int]:
    """Days where ``fitted`` changes sign and keeps each sign ``hold`` days on either side."""
    sign = np.sign(fitted)
    out = []
    for t in range(hold, len(fitted) - hold + 1):
        before, after = sign[t - hold : t], sign[t : t + hold]
        held = np.all(before == before[-1]) and np.all(after == after[0])
        if before[-1] != after[0] and held and after[0] != 0:
            out.append(t)
    return out


def rank_swaps(
    prefix: str,
    series: Sequence[Series],
    days: Sequence[date],
    figure: str,
    params: EventParams | None = None,
) -> list[Event]:
    """Pairs of a top 5 that change places within the quarter, for ``swap_days`` or more."""
    p = params or EventParams()
    out = []
    for a, b in combinations(series, 2):
        d = np.log1p(a.daily) - np.log1p(b.daily)
        if len(d) < 2 * p.swap_days:
            continue
        sigma = noise_sigma(d)
        segs = segment(d, (p.changes.z * sigma) ** 2, p.changes.min_slope_days)
        fitted = np.concatenate([[s.at(t) for t in range(s.start, s.end + 1)] for s in segs])
        for t in _crossings(fitted, p.swap_days):
            up, down = (a, b) if fitted[t] > 0 else (b, a)
            text = f"{up.label} overtook {down.label} from {_d(days[t])}."
            subject = f"{prefix}:{up.key}>{down.key}"
            out.append(Event("rank_swap", subject, days[t], None, 0.0, text, figure))
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


def backscatter_events(episodes: Sequence[Episode], figure: str, top: int = 5) -> list[Event]:
    """The largest DoS episodes seen through their backscatter, one event each."""
    out = []
    for ep in sorted(episodes, key=lambda e: (-e.packets, e.start))[:top]:
        minutes = max(ep.seconds / 60.0, 1.0)
        text = (
            f"Backscatter from {ep.victim} ({ep.region}, {ep.protocols}) on {_d(ep.start.date())} "
            f"{ep.start:%H:%M}-{ep.end:%H:%M} UTC: {ep.packets} packets, "
            f"{ep.packets / minutes:.0f} per minute (a DoS attack on that host)."
        )
        out.append(
            Event("backscatter", f"victim:{ep.victim}", ep.start.date(), ep.end.date(), 0.0, text, figure)
        )
    return out
