"""Change detection on one daily series: optimal segmentation of log counts into lines.

A daily count series ``y`` is modelled on ``log1p(y)`` as consecutive segments, each a straight
line (a level and a slope) or, when shorter than ``min_slope_days``, a constant. The segment
boundaries are the exact minimum of residual sum of squares plus a penalty per segment (optimal
partitioning by dynamic programming, the exact form of binary segmentation / PELT; O(n^2) for a
quarter's 92 days). The penalty is ``z**2`` noise variances per parameter, the noise being
estimated robustly from first differences (median absolute deviation), so a boundary is drawn
only where it removes far more than noise could.

The segments are then read as changes (``Change``):

- ``jump``: the level at a boundary differs from the line before it by >= ``min_step``
  (log ratio), a surge (up) or a drop (down);
- ``pulse``: a segment of at most ``max_pulse`` days above (or below) both neighbours by
  >= ``min_pulse``, a short burst (or dip);
- ``trend``: a segment of >= ``min_trend_days`` whose slope changes the level by >=
  ``min_trend`` over it (and differs that much from the slope before it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Change", "ChangeParams", "Fit", "Segment", "detect_changes", "noise_sigma", "segment"]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ChangeParams:
    """Thresholds of the change detector (ReportSettings carries them)."""

    z: float = 5.0  # penalty: z^2 noise variances per parameter of a segment
    min_step: float = 0.22  # |log ratio| of a jump: ~25% up or ~20% down
    min_pulse: float = 0.4  # |log ratio| of a burst against both neighbours: ~50%
    min_trend: float = 0.3  # |log change| a slope makes over its segment: ~35%
    max_pulse: int = 4  # longest burst, days
    min_slope_days: int = 7  # shorter segments are constants
    min_trend_days: int = 14  # a trend needs two weeks


@dataclass(frozen=True)
class Segment:
    """Days ``start`` to ``end`` (inclusive) fitted as ``level + slope * (day - start)``."""

    start: int
    end: int
    level: float
    slope: float

    @property
    def days(self) -> int:
        """Number of days in the segment."""
        return self.end - self.start + 1

    def at(self, day: float) -> float:
        """The segment's line at ``day`` (it may be outside the segment)."""
        return self.level + self.slope * (day - self.start)


@dataclass(frozen=True)
class Change:
    """One detected change: ``kind`` is 'jump', 'pulse' or 'trend', from day index ``start``."""

    kind: str
    start: int
    end: int  # last day index the change covers
    effect: float  # log ratio: jump or pulse size, or the trend's change over its segment


@dataclass(frozen=True)
class Fit:
    """The fitted log series, its noise, the segments and the changes read from them."""

    fitted: F64
    sigma: float
    segments: list[Segment]
    changes: list[Change]


def noise_sigma(logy: F64) -> float:
    """Robust day-to-day noise of a log series: MAD of first differences / sqrt(2)."""
    if len(logy) < 3:
        return 1.0
    d = np.diff(logy)
    mad = float(np.median(np.abs(d - np.median(d))))
    return max(1.4826 * mad / float(np.sqrt(2.0)), 0.02)


def segment(logy: F64, penalty: float, min_slope_days: int = 7) -> list[Segment]:
    """Optimal partition of ``logy`` into line segments, ``penalty`` per parameter."""
    n = len(logy)
    t = np.arange(n, dtype=np.float64)
    c = [np.concatenate([[0.0], np.cumsum(v)]) for v in (t, t * t, logy, logy * logy, t * logy)]
    best = np.zeros(n + 1)
    prev = np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        s = np.arange(end)
        length = (end - s).astype(np.float64)
        st, stt, sy, syy, sty = (ci[end] - ci[s] for ci in c)
        rss = syy - sy * sy / length
        params = np.ones(end)
        sloped = length >= min_slope_days
        sxx = stt - st * st / length
        sxy = sty - st * sy / length
        ok = sloped & (sxx > 1e-12)
        rss[ok] -= sxy[ok] ** 2 / sxx[ok]
        params[ok] = 2.0
        total = best[s] + np.maximum(rss, 0.0) + penalty * (params + 1.0)  # +1: the boundary
        k = int(np.argmin(total))
        best[end], prev[end] = total[k], k
    bounds = []
    end = n
    while end > 0:
        bounds.append((int(prev[end]), end))
        end = int(prev[end])
    out = []
    for a, b in reversed(bounds):
        yy, tt = logy[a:b], t[a:b] - a
        if b - a >= min_slope_days:
            slope, level = np.polyfit(tt, yy, 1)
        else:
            slope, level = 0.0, float(yy.mean())
        out.append(Segment(a, b - 1, float(level), float(slope)))
    return out


def _read(segs: list[Segment], p: ChangeParams) -> list[Change]:
    changes: list[Change] = []
    pulses = set()
    for i in range(1, len(segs) - 1):
        a, s, b = segs[i - 1], segs[i], segs[i + 1]
        if s.days > p.max_pulse:
            continue
        up, down = s.level - a.at(s.start), s.level - b.at(s.end)
        if min(up, down) >= p.min_pulse or max(up, down) <= -p.min_pulse:
            changes.append(Change("pulse", s.start, s.end, float((up + down) / 2)))
            pulses.add(i)
    for i in range(1, len(segs)):
        if i in pulses or i - 1 in pulses:
            continue
        before, s = segs[i - 1], segs[i]
        if before.days <= p.max_pulse and i >= 2 and i - 1 not in pulses:
            before = segs[i - 2]  # a short transition: compare with the level before it
        jump = s.level - before.at(s.start)
        if abs(jump) >= p.min_step:
            changes.append(Change("jump", s.start, segs[-1].end, float(jump)))
    for i, s in enumerate(segs):
        if s.days < p.min_trend_days:
            continue
        change = s.slope * (s.days - 1)
        earlier = next((segs[j] for j in range(i - 1, -1, -1) if segs[j].days >= p.min_slope_days), None)
        turn = change - (earlier.slope * (s.days - 1) if earlier else 0.0)
        if abs(change) >= p.min_trend and abs(turn) >= p.min_trend:
            changes.append(Change("trend", s.start, s.end, float(change)))
    changes.sort(key=lambda ch: (ch.start, ch.kind))
    return changes


def _hinge_rss(y: F64, w: F64, lo: int, hi: int, taus: tuple[int, ...]) -> float:
    """Weighted residual of a flat line that bends at each of ``taus``, fitted on ``lo..hi``."""
    t = np.arange(lo, hi + 1, dtype=np.float64)
    x = np.column_stack([np.ones(len(t))] + [np.maximum(t - tau, 0.0) for tau in taus])
    sw = w[lo : hi + 1, None]
    beta, *_ = np.linalg.lstsq(x * sw, y[lo : hi + 1] * sw[:, 0], rcond=None)
    r = (y[lo : hi + 1] - x @ beta) * sw[:, 0]
    return float(r @ r)


def _onset(logy: F64, fitted: F64, lo: int, hi: int, p: ChangeParams) -> tuple[int, float]:
    """Day in ``lo..hi`` where a flat stretch starts to trend, allowing the trend one later
    bend (a growth that accelerates); and the residual of that fit. The fit is on counts
    weighted by the inverse fitted level (noise is relative), where a ramp is a line."""
    y, w = np.expm1(logy), 1.0 / np.maximum(np.expm1(fitted), 1.0)
    last = hi - p.min_trend_days + 1
    best, best_rss = lo, np.inf
    for t1 in range(lo, last + 1):
        for t2 in [None, *range(t1 + p.min_slope_days, hi - p.min_slope_days + 1)]:
            taus = (t1,) if t2 is None else (t1, t2)
            rss = _hinge_rss(y, w, lo, hi, taus)
            if rss < best_rss:
                best, best_rss = t1, rss
    return best, best_rss


def _refine_trends(
    logy: F64, fitted: F64, segs: list[Segment], changes: list[Change], p: ChangeParams, penalty: float
) -> list[Change]:
    """Date a trend that starts smoothly at its hinge: segments are discontinuous lines, so a
    slope that sets in without a jump (or after a burst or the end of a raised start) is
    otherwise dated where the segment starts, often days early or late."""
    jumps = {c.start: c.effect for c in changes if c.kind == "jump"}
    out = []
    for c in changes:
        i = next((k for k, s in enumerate(segs) if s.start == c.start), 0)
        if c.kind != "trend" or i == 0 or jumps.get(c.start, 0.0) * c.effect > 0:
            out.append(c)
            continue
        prev = segs[i - 1]
        flat = abs(prev.slope * (prev.days - 1)) < p.min_trend / 2 and prev.days > p.max_pulse
        lo = prev.start if flat and c.start not in jumps else c.start
        best, _ = _onset(logy, fitted, lo, segs[-1].end, p)
        out.append(Change("trend", best, c.end, c.effect))
    return out


def detect_changes(counts: npt.ArrayLike, params: ChangeParams | None = None) -> Fit:
    """Segments and changes of a daily count series (see the module docstring)."""
    p = params or ChangeParams()
    y = np.log1p(np.asarray(counts, dtype=np.float64))
    if len(y) < p.min_trend_days or not np.any(y > 0):
        return Fit(y, 1.0, [], [])
    sigma = noise_sigma(y)
    segs = segment(y, (p.z * sigma) ** 2, p.min_slope_days)
    fitted = np.concatenate([[s.at(d) for d in range(s.start, s.end + 1)] for s in segs])
    changes = _refine_trends(y, fitted, segs, _read(segs, p), p, (p.z * sigma) ** 2)
    return Fit(fitted, sigma, segs, sorted(changes, key=lambda c: (c.start, c.kind)))
