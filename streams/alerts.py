"""Real-time alerts from closed windows: surges, new top-10 ports, Mirai bursts, backscatter.

Pure logic: :class:`AlertDetector` sees closed windows in event-time order and returns Alert
records (``schemas/alert.avsc``) with their evidence. Baselines are robust: the median and
the median absolute deviation (MAD) of the same key over the trailing windows, with windows
where the key was absent counted as zero. A repeat of the same alert kind for the same key is
held back for ``cooldown_windows`` windows.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from streams.counts import ClosedWindow

__all__ = ["AlertDetector", "AlertThresholds"]


@dataclass(frozen=True)
class AlertThresholds:
    """Thresholds of every alert rule (settings pass them in)."""

    window: str = "1h"  # which window size the surge rules watch
    baseline_windows: int = 24  # trailing windows in the baseline
    min_history: int = 6  # windows needed before a key can alert
    z_score: float = 6.0  # robust z-score to call a surge
    min_ratio: float = 5.0  # and observed >= ratio * baseline
    min_packets: int = 200  # and at least this many packets (or sources)
    min_sources: int = 20
    top_n: int = 10  # "a port entering the top N"
    cooldown_windows: int = 6
    backscatter_ppm: int = 30  # corsaro: >= 30 packets per minute per victim ...
    backscatter_min_packets: int = 25  # ... >= 25 packets ...
    backscatter_min_seconds: int = 60  # ... over >= 60 s


SURGE_KINDS = {"port": "surge", "region": "surge", "fp_region": "mirai_burst"}


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")


class AlertDetector:
    """Evaluates the alert rules on each closed window."""

    def __init__(self, thresholds: AlertThresholds | None = None) -> None:
        """A detector with empty history."""
        self.t = thresholds or AlertThresholds()
        self._history: dict[tuple[str, str], deque[dict[str, tuple[int, int]]]] = {}
        self._cooldown_until: dict[tuple[str, str], int] = {}
        self._victim_run: dict[str, tuple[int, int, int]] = {}  # victim -> (start, end, packets)
        # The top-N ports of each window in the port history, computed once per window.
        self._tops: deque[list[str]] = deque(maxlen=self.t.baseline_windows)

    def observe(self, w: ClosedWindow) -> list[dict[str, Any]]:
        """Alerts raised by this window (Alert records), then fold it into the history."""
        alerts: list[dict[str, Any]] = []
        if w.kind == "victim" and w.size == "1m":
            alerts += self._backscatter(w)
        if w.size == self.t.window and w.kind in SURGE_KINDS:
            hist = self._history.setdefault((w.kind, w.size), deque(maxlen=self.t.baseline_windows))
            top = self._top(w) if w.kind == "port" else []
            if len(hist) >= self.t.min_history:
                alerts += self._surges(w, hist)
                if w.kind == "port":
                    alerts += self._new_top(w, hist, top)
            hist.append(w.counts)
            if w.kind == "port":
                self._tops.append(top)
        return [a for a in alerts if self._cooled(a, w)]

    def _cooled(self, alert: dict[str, Any], w: ClosedWindow) -> bool:
        key = (alert["kind"], alert["key"])
        if w.start < self._cooldown_until.get(key, -(2**62)):
            return False
        self._cooldown_until[key] = w.end + (w.end - w.start) * (self.t.cooldown_windows - 1)
        return True

    def _surges(self, w: ClosedWindow, hist: deque[dict[str, tuple[int, int]]]) -> list[dict[str, Any]]:
        out = []
        kind = SURGE_KINDS[w.kind]
        # Mirai bursts are about bots (sources); port/region surges about packets.
        metric = "sources" if w.kind == "fp_region" else "packets"
        column, floor = (
            (w.sources, self.t.min_sources) if metric == "sources" else (w.packets, self.t.min_packets)
        )
        for i in np.flatnonzero(column >= floor).tolist():  # most values are far below the floor
            key, observed = w.values[i], int(column[i])
            if w.kind == "fp_region" and not key.startswith("mirai/"):
                continue
            series = np.array([h.get(key, (0, 0))[1 if metric == "sources" else 0] for h in hist], float)
            med = float(np.median(series))
            mad = float(np.median(np.abs(series - med)))
            # A MAD of zero (a flat series) would make any blip infinite: floor the spread
            # with the Poisson standard deviation of the baseline.
            spread = max(1.4826 * mad, math.sqrt(max(med, 1.0)))
            score = (observed - med) / spread
            if score >= self.t.z_score and observed >= self.t.min_ratio * max(med, 1.0):
                name = f"{kind}_{metric}" if kind == "surge" else kind
                out.append(
                    self._alert(
                        name,
                        w,
                        key,
                        float(observed),
                        med,
                        score,
                        f"{key} {metric} {observed} in the {w.size} window from {_iso(w.start)}, "
                        f"{observed / max(med, 1.0):.1f}x the trailing median {med:g}",
                        {"metric": metric, "mad": f"{mad:g}", "history": str(len(series))},
                    )
                )
        return out

    def _top(self, w: ClosedWindow) -> list[str]:
        """The top-N values by packets (ties by name)."""
        n = self.t.top_n
        if len(w.packets) > n:
            # Only values with at least the N-th largest count can be in the top N.
            nth = np.partition(w.packets, len(w.packets) - n)[len(w.packets) - n]
            rows = np.flatnonzero(w.packets >= nth).tolist()
        else:
            rows = list(range(len(w.packets)))
        pairs = [(w.values[i], int(w.packets[i])) for i in rows]
        return [k for k, _ in heapq.nsmallest(n, pairs, key=lambda kv: (-kv[1], kv[0]))]

    def _new_top(
        self, w: ClosedWindow, hist: deque[dict[str, tuple[int, int]]], top: list[str]
    ) -> list[dict[str, Any]]:
        before = set().union(*self._tops)
        out = []
        for rank, key in enumerate(top, start=1):
            packets = w.counts[key][0]
            if key in before or packets < self.t.min_packets:
                continue
            base = float(np.median([h.get(key, (0, 0))[0] for h in hist]))
            out.append(
                self._alert(
                    "top_new_port",
                    w,
                    key,
                    float(packets),
                    base,
                    float(rank),
                    f"{key} entered the top {self.t.top_n} ports at rank {rank} in the window from "
                    f"{_iso(w.start)} ({packets} packets)",
                    {"rank": str(rank)},
                )
            )
        return out

    def _backscatter(self, w: ClosedWindow) -> list[dict[str, Any]]:
        out = []
        for victim, (packets, targets) in w.counts.items():
            if packets < self.t.backscatter_ppm:
                self._victim_run.pop(victim, None)
                continue
            start, end, total = self._victim_run.get(victim, (w.start, w.start, 0))
            if end != w.start:  # not contiguous with the last qualifying minute: a new run
                start, total = w.start, 0
            end, total = w.end, total + packets
            self._victim_run[victim] = (start, end, total)
            # One minute window cannot show 60 s of activity: the run must span more than that.
            if end - start > self.t.backscatter_min_seconds and total >= self.t.backscatter_min_packets:
                out.append(
                    self._alert(
                        "backscatter_episode",
                        w,
                        victim,
                        float(total),
                        float(self.t.backscatter_ppm),
                        total / ((end - start) / 60),
                        f"{victim} answered {targets} darknet addresses with {packets} packets in the "
                        f"minute from {_iso(w.start)}: a victim of a spoofed-source DoS since {_iso(start)}",
                        {
                            "episode_start": _iso(start),
                            "targets": str(targets),
                            "packets_per_minute": f"{packets}",
                        },
                        dimension="victim",
                    )
                )
        # Victims that did not appear in this minute end their run.
        for victim in [v for v, (_, end, _) in self._victim_run.items() if end < w.start]:
            del self._victim_run[victim]
        return out

    def _alert(
        self,
        kind: str,
        w: ClosedWindow,
        key: str,
        observed: float,
        baseline: float,
        score: float,
        message: str,
        evidence: dict[str, str],
        dimension: str | None = None,
    ) -> dict[str, Any]:
        severity = "critical" if score >= 3 * self.t.z_score else "warning"
        return {
            "alert_id": f"{kind}/{w.kind}/{key}/{w.size}/{_iso(w.start)}",
            "kind": kind,
            "severity": severity,
            "dimension": dimension or w.kind,
            "key": key,
            "window_start": datetime.fromtimestamp(w.start, tz=UTC),
            "window_end": datetime.fromtimestamp(w.end, tz=UTC),
            "observed": observed,
            "baseline": baseline,
            "score": round(score, 3),
            "message": message,
            "sensor_id": None,
            "evidence": evidence,
        }
