"""Backscatter episodes: a DoS victim's run of minutes as one alert, opened, updated and closed,
graded by the attack rate extrapolated to the whole IPv4 space.

Pure logic, fed by :class:`streams.alerts.AlertDetector` with the closed victim minute windows
in event-time order. A victim's run of consecutive minutes is opened when it meets Moore et al.'s
rule ("Inferring Internet Denial-of-Service Activity": >= 25 packets, over more than 60 s, >= 30
packets a minute), updated when its severity rises, and closed when a minute passes without it;
its records share one ``alert_id`` and carry ``evidence["state"]`` (open, update, close). The
severity grades the attack, not the darknet's view of it: the run's rate times
2^32 / monitored addresses (Moore et al.'s estimate for uniformly spoofed sources).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from streams.windows import ClosedWindow

if TYPE_CHECKING:
    from streams.alerts import AlertThresholds

__all__ = ["SEVERITIES", "BackscatterEpisodes", "iso_minute"]

SEVERITIES = ("info", "warning", "critical")  # in increasing order


def iso_minute(seconds: int) -> str:
    """An alert's minute: 2022-04-01T12:00Z."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")


def _si(value: float) -> str:
    """A rate in a readable unit: 840, 12k, 3.4M."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.0f}"


@dataclass
class _Episode:
    """A victim's run of consecutive minute windows (one backscatter alert while it lasts)."""

    start: int
    end: int  # end of its last minute
    first: int  # packets of its first minute
    packets: int = 0
    minutes: int = 0
    last: int = 0  # packets of its latest minute
    peak: int = 0  # most packets in one minute
    targets: int = 0  # most darknet addresses answered in one minute
    severity: str = ""  # "" until the episode is opened
    revision: int = 0  # records sent: open, then each update


class BackscatterEpisodes:
    """The open episodes of every victim, and the rule that opens, grades and closes them."""

    def __init__(self, thresholds: AlertThresholds) -> None:
        """No episode open."""
        self.t = thresholds
        self._episodes: dict[str, _Episode] = {}  # victim -> its current run

    def close_before(self, until: int) -> list[dict[str, Any]]:
        """Close the episodes whose last minute ended before ``until`` (epoch seconds): for
        the end of a stream, or a watermark, when no later victim minute will come."""
        out = []
        for victim in [v for v, ep in self._episodes.items() if ep.end < until]:
            out += self._close(victim)
        return out

    def observe(self, w: ClosedWindow) -> list[dict[str, Any]]:
        """Fold one victim minute into the episodes: open, update or close them."""
        out = []
        for victim, (packets, targets) in w.counts.items():
            if packets < self.t.backscatter_ppm:
                continue  # as if absent: its run (if any) ends below
            ep = self._episodes.get(victim)
            if ep is not None and w.start < ep.end:
                continue  # a minute already folded in (a window closed again)
            if ep is not None and w.start > ep.end:  # a silent minute in between: a new run
                out += self._close(victim)
                ep = None
            if ep is None:
                ep = self._episodes[victim] = _Episode(start=w.start, end=w.start, first=packets)
            ep.end, ep.packets, ep.minutes, ep.last = w.end, ep.packets + packets, ep.minutes + 1, packets
            ep.peak, ep.targets = max(ep.peak, packets), max(ep.targets, targets)
            # Two minutes cannot tell a 61 s burst from a steady two minutes: wait for a third
            # (whose arrival makes the second a full minute), or for the end of the run.
            if ep.minutes >= 3 and self._qualifies(ep):
                out += self._grade_episode(victim, ep)
        # Victims absent from this minute (or below the floor) end their run.
        return out + self.close_before(w.start + 1)

    def _grade_episode(self, victim: str, ep: _Episode) -> list[dict[str, Any]]:
        """The open record of a new episode, or an update when its severity rose."""
        severity = self._grade(self._rate_ppm(ep))
        if not ep.severity:
            ep.severity = severity
            return [self._episode_alert(victim, ep, "open")]
        if SEVERITIES.index(severity) > SEVERITIES.index(ep.severity):
            ep.severity, ep.revision = severity, ep.revision + 1
            return [self._episode_alert(victim, ep, "update")]
        return []

    def _close(self, victim: str) -> list[dict[str, Any]]:
        """End a victim's run: its close record (and its open one, for a two-minute episode)."""
        ep = self._episodes.pop(victim)
        opened = self._grade_episode(victim, ep) if not ep.severity and self._qualifies(ep) else []
        return opened + ([self._episode_alert(victim, ep, "close")] if ep.severity else [])

    def _qualifies(self, ep: _Episode) -> bool:
        """Moore et al.'s rule: enough packets, over more than a minute, at a high enough rate."""
        # One minute window cannot show 60 s of activity: the run must span more than that.
        return (
            ep.end - ep.start > self.t.backscatter_min_seconds
            and ep.packets >= self.t.backscatter_min_packets
            and self._rate_ppm(ep) >= self.t.backscatter_rate_ppm
        )

    @staticmethod
    def _rate_ppm(ep: _Episode) -> float:
        """Packets a minute at the darknet. The first and last minutes of a run are partial,
        those between are full: their mean is the rate. A run of two minutes lasted at least
        the 60 s the rule asks for and at most two minutes: the rate of a 60 s run, the rule's."""
        if ep.minutes >= 3:
            return (ep.packets - ep.first - ep.last) / (ep.minutes - 2)
        return float(ep.packets)

    def extrapolated_pps(self, ppm: float) -> float:
        """The victim's reply rate to the whole IPv4 space, from the darknet's share of it."""
        return ppm / 60 * 2**32 / max(1, self.t.monitored_addresses)

    def _grade(self, ppm: float) -> str:
        pps = self.extrapolated_pps(ppm)
        if pps >= self.t.backscatter_critical_pps:
            return "critical"
        return "warning" if pps >= self.t.backscatter_warning_pps else "info"

    def _episode_alert(self, victim: str, ep: _Episode, state: str) -> dict[str, Any]:
        """The open, update or close record of an episode: one alert id from start to end."""
        ppm = self._rate_ppm(ep)
        pps, floor = self.extrapolated_pps(ppm), self.extrapolated_pps(self.t.backscatter_rate_ppm)
        verb = {"open": "is", "update": "is", "close": "was"}[state]
        start, ended = iso_minute(ep.start), f" until {iso_minute(ep.end)}" if state == "close" else ""
        return {
            "alert_id": f"backscatter_episode/victim/{victim}/1m/{iso_minute(ep.start)}",
            "kind": "backscatter_episode",
            "severity": ep.severity,
            "dimension": "victim",
            "key": victim,
            "window_start": datetime.fromtimestamp(ep.start, tz=UTC),
            "window_end": datetime.fromtimestamp(ep.end, tz=UTC),
            "observed": round(pps),
            "baseline": round(floor),
            "score": round(pps / floor, 3),
            "message": f"{victim} {verb} the victim of a spoofed-source DoS since {start}{ended}: "
            f"{ep.packets} replies to {ep.targets}+ darknet addresses in {ep.minutes} minutes, "
            f"{ppm:.0f} a minute, about {_si(pps)} packets/s to the whole IPv4 space",
            "sensor_id": None,
            "evidence": {
                "state": state,
                "revision": str(ep.revision),
                "episode_start": iso_minute(ep.start),
                "episode_end": iso_minute(ep.end),
                "minutes": str(ep.minutes),
                "packets": str(ep.packets),
                "packets_per_minute": f"{ppm:.1f}",
                "peak_packets_per_minute": str(ep.peak),
                "targets": str(ep.targets),
                "monitored_addresses": str(self.t.monitored_addresses),
                "extrapolated_pps": f"{pps:.0f}",
            },
        }
