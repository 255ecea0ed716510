"""Real-time alerts from closed windows: surges, new top-10 ports, Mirai bursts, backscatter.

Pure logic: :class:`AlertDetector` sees closed windows in event-time order and returns Alert
records (``schemas/alert.avsc``) with their evidence. Baselines cover a span of event time,
not a number of windows: for a window of size S starting at t, the baseline of a key is the
series of its counts in the ``baseline_windows`` slots of size S that start in
``[t - baseline_windows * S, t)``. A slot where no window of that kind closed (a silent
window), or whose window lacked the key, counts as zero; a window counts once per slot, however
often it was closed (a late re-close replaces the earlier counts). A window can alert only when
at least ``min_history`` windows of its kind and size closed in its span, so a capture replayed
years after the last windows is not compared with them, and a gap lowers the history. Slots
before the detector's first window, or before the first window after a gap longer than the
whole span, are unknown rather than silent: the series then starts there, so a restart (or a
replay) is compared with its own first windows, not with a day of zeros. Baselines are robust:
the median and the median absolute deviation (MAD) of that series. The "new in the top N" rule
compares with the top-N sets of the windows in the same span. A repeat of the same alert kind
for the same key is held back for ``cooldown_windows`` windows.

Backscatter is tracked per episode (:mod:`streams.episodes`), not per minute: a victim's run of minute windows
is one alert (one ``alert_id``) that is opened when the run meets Moore et al.'s rule (>= 25
packets, over more than 60 s, >= 30 packets a minute), updated when its severity rises, and
closed when a minute passes without it; ``evidence["state"]`` says which (one-shot alerts, the
surges and new top ports, carry ``event``). Severity is graded by magnitude: an episode's attack
rate extrapolated to the whole IPv4 space from the monitored address count (Moore et al.,
"Inferring Internet Denial-of-Service Activity": rate * 2^32 / monitored addresses, assuming
uniformly spoofed sources), a surge's ratio to its baseline and its volume.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np

from streams.episodes import SEVERITIES, BackscatterEpisodes, iso_minute
from streams.windows import ClosedWindow

__all__ = ["SEVERITIES", "AlertDetector", "AlertThresholds", "record_key"]


@dataclass(frozen=True)
class AlertThresholds:
    """Thresholds of every alert rule (settings pass them in)."""

    window: str = "1h"  # which window size the surge rules watch
    baseline_windows: int = 24  # the baseline spans this many window sizes before the window
    min_history: int = 6  # windows that closed in that span before a key can alert
    z_score: float = 6.0  # robust z-score to call a surge
    min_ratio: float = 5.0  # and observed >= ratio * baseline
    min_packets: int = 200  # and at least this many packets (or sources)
    min_sources: int = 20
    top_n: int = 10  # "a port entering the top N"
    cooldown_windows: int = 6
    # The merge shows the detector a victim's minute only with at least this many packets
    # (streams/merge.py reads it): 1, so an episode split over two minutes is seen whole.
    backscatter_ppm: int = 1
    backscatter_rate_ppm: float = 30.0  # Moore/corsaro: >= 30 packets per minute per victim ...
    backscatter_min_packets: int = 25  # ... >= 25 packets ...
    backscatter_min_seconds: int = 60  # ... over >= 60 s
    monitored_addresses: int = 256  # darknet addresses the rates are extrapolated from
    backscatter_warning_pps: float = 40e6  # attack rate (extrapolated) of a warning ...
    backscatter_critical_pps: float = 60e6  # ... and of a critical episode
    surge_critical_ratio: float = 20.0  # a critical surge: >= 20x its baseline ...
    surge_critical_volume: float = 10.0  # ... and >= 10x the packets (sources) floor


SURGE_KINDS = {"port": "surge", "region": "surge", "fp_region": "mirai_burst"}


def record_key(alert: dict[str, Any]) -> str:
    """What identifies one alert record: its alert id, state and revision. An episode's open,
    updates and close share the alert id and differ here; the same record raised or read
    twice has the same key (the webhook's idempotency key)."""
    evidence = alert.get("evidence") or {}
    return f"{alert['alert_id']}#{evidence.get('state', 'event')}#{evidence.get('revision', '0')}"


class _Seen(NamedTuple):
    """What the baseline keeps of one closed window."""

    counts: dict[str, tuple[int, int]]
    top: list[str]  # its top-N values by packets (port windows only)


@dataclass
class _Track:
    """The closed windows of one (kind, size) by start, and where the detector's knowledge starts."""

    since: int  # slots before this start are unknown, not silent
    windows: dict[int, _Seen] = field(default_factory=dict)


class AlertDetector:
    """Evaluates the alert rules on each closed window."""

    def __init__(self, thresholds: AlertThresholds | None = None) -> None:
        """A detector with empty history."""
        self.t = thresholds or AlertThresholds()
        self._tracks: dict[tuple[str, str], _Track] = {}
        self._cooldown_until: dict[tuple[str, str, str], int] = {}  # (window kind, alert, key)
        self._cooling = 64  # cooldowns after the last pruning of expired ones
        self._episodes = BackscatterEpisodes(self.t)

    def observe(self, w: ClosedWindow) -> list[dict[str, Any]]:
        """Alerts raised by this window (Alert records), then fold it into the history."""
        alerts: list[dict[str, Any]] = []
        if w.kind == "victim" and w.size == "1m":
            alerts += self._episodes.observe(w)
        if w.size == self.t.window and w.kind in SURGE_KINDS:
            past = self._span(w)
            # The top-N of every port window is computed once, when it closes.
            top = self._top(w) if w.kind == "port" else []
            if sum(p is not None for p in past) >= self.t.min_history:
                raised = self._surges(w, past)
                if w.kind == "port":
                    raised += self._new_top(w, past, top)
                alerts += [a for a in raised if self._cooled(a, w)]
            self._keep(w, top)
        return alerts

    def close_before(self, until: int) -> list[dict[str, Any]]:
        """Close the backscatter episodes whose last minute ended before ``until`` (epoch
        seconds): for the end of a stream, or a watermark, when no later victim minute will come."""
        return self._episodes.close_before(until)

    def _span(self, w: ClosedWindow) -> list[_Seen | None]:
        """The known slots of the baseline span of ``w``, oldest first (None: a silent window)."""
        size, track = w.end - w.start, self._tracks.get((w.kind, w.size))
        first = w.start - self.t.baseline_windows * size
        if track is None:
            self._tracks[(w.kind, w.size)] = _Track(since=w.start)
            return []
        if w.start > track.since and not any(first <= s < w.start for s in track.windows):
            track.since = w.start  # nothing closed in a whole span: the detector starts again
        elif w.start < track.since <= w.start + self.t.baseline_windows * size:
            track.since = w.start  # a late older window, in the span of the first one: known now
        return [track.windows.get(s) for s in range(max(first, track.since), w.start, size)]

    def _keep(self, w: ClosedWindow, top: list[str]) -> None:
        """Store ``w`` in its slot (replacing an earlier close of it), dropping what no span reaches."""
        track = self._tracks[(w.kind, w.size)]
        track.windows[w.start] = _Seen(w.counts, top)
        # The span of the newest window (or of a re-close of it) starts here; a late window
        # older than that finds the dropped slots unknown rather than silent.
        horizon = max(track.windows) - self.t.baseline_windows * (w.end - w.start)
        for start in [s for s in track.windows if s < horizon]:
            del track.windows[start]
        track.since = max(track.since, horizon)

    def _cooled(self, alert: dict[str, Any], w: ClosedWindow) -> bool:
        """One-shot alerts only: a repeat of the kind and key within the cooldown is dropped."""
        key = (w.kind, alert["kind"], alert["key"])
        if w.start < self._cooldown_until.get(key, -(2**62)):
            return False
        self._cooldown_until[key] = w.end + (w.end - w.start) * (self.t.cooldown_windows - 1)
        if len(self._cooldown_until) >= 2 * self._cooling:
            # Expired cooldowns of this window kind go (keys come and go: ports, regions),
            # checked each doubling; other kinds' windows may be behind in event time.
            self._cooldown_until = {
                k: u for k, u in self._cooldown_until.items() if k[0] != w.kind or u > w.start
            }
            self._cooling = max(len(self._cooldown_until), 64)
        return True

    def _surges(self, w: ClosedWindow, past: list[_Seen | None]) -> list[dict[str, Any]]:
        out = []
        history = sum(p is not None for p in past)
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
            j = 1 if metric == "sources" else 0
            series = np.array([p.counts.get(key, (0, 0))[j] if p is not None else 0 for p in past], float)
            med = float(np.median(series))
            mad = float(np.median(np.abs(series - med)))
            # A MAD of zero (a flat series) would make any blip infinite: floor the spread
            # with the Poisson standard deviation of the baseline.
            spread = max(1.4826 * mad, math.sqrt(max(med, 1.0)))
            score = (observed - med) / spread
            ratio = observed / max(med, 1.0)
            if score >= self.t.z_score and ratio >= self.t.min_ratio:
                name = f"{kind}_{metric}" if kind == "surge" else kind
                volume = observed / floor
                out.append(
                    self._alert(
                        name,
                        w,
                        key,
                        float(observed),
                        med,
                        score,
                        f"{key} {metric} {observed} in the {w.size} window from {iso_minute(w.start)}, "
                        f"{ratio:.1f}x the trailing median {med:g}",
                        {
                            "metric": metric,
                            "mad": f"{mad:g}",
                            "history": str(history),  # windows that closed in the span
                            "slots": str(len(series)),  # with the silent ones, as zeros
                            "ratio": f"{ratio:.1f}",
                            "volume": f"{volume:.1f}",  # observed / the packets (sources) floor
                        },
                        self._surge_grade(ratio, volume),
                    )
                )
        return out

    def _surge_grade(self, ratio: float, volume: float) -> str:
        """Critical when both far above the baseline and large; info when barely past the
        rule on both counts; warning between."""
        t = self.t
        if ratio >= t.surge_critical_ratio and volume >= t.surge_critical_volume:
            return "critical"
        return "info" if ratio < 2 * t.min_ratio and volume < 2 else "warning"

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

    def _new_top(self, w: ClosedWindow, past: list[_Seen | None], top: list[str]) -> list[dict[str, Any]]:
        before = {k for p in past if p is not None for k in p.top}
        out = []
        for rank, key in enumerate(top, start=1):
            packets = w.counts[key][0]
            if key in before or packets < self.t.min_packets:
                continue
            base = float(np.median([p.counts.get(key, (0, 0))[0] if p is not None else 0 for p in past]))
            out.append(
                self._alert(
                    "top_new_port",
                    w,
                    key,
                    float(packets),
                    base,
                    float(rank),
                    f"{key} entered the top {self.t.top_n} ports at rank {rank} in the window from "
                    f"{iso_minute(w.start)} ({packets} packets)",
                    {"rank": str(rank)},
                    # A port new in the top N is news, not an incident, unless it is a surge too.
                    "info",
                )
            )
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
        severity: str,
    ) -> dict[str, Any]:
        return {
            "alert_id": f"{kind}/{w.kind}/{key}/{w.size}/{iso_minute(w.start)}",
            "kind": kind,
            "severity": severity,
            "dimension": w.kind,
            "key": key,
            "window_start": datetime.fromtimestamp(w.start, tz=UTC),
            "window_end": datetime.fromtimestamp(w.end, tz=UTC),
            "observed": observed,
            "baseline": baseline,
            "score": round(score, 3),
            "message": message,
            "sensor_id": None,
            "evidence": {"state": "event", **evidence},
        }
