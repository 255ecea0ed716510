"""DoS victims seen through their backscatter, their episodes aggregated per victim (as CAIDA
reports them: episodes, packets, first and last seen, peak rate, protocols).

IPv4 and IPv6 victims are ranked apart: a telescope's IPv6 space catches a sliver of what its
IPv4 space does, so an IPv6 victim would hardly ever reach a common top list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from reports.series import Episode

__all__ = ["Victim", "victims"]


@dataclass(frozen=True)
class Victim:
    """A DoS victim over the quarter, its backscatter episodes aggregated (as CAIDA reports)."""

    victim: str
    region: str
    episodes: int
    packets: int
    first: datetime
    last: datetime
    peak_per_minute: float
    protocols: str

    @property
    def ipv6(self) -> bool:
        """An IPv6 victim (the store shows IPv4 victims dotted)."""
        return ":" in self.victim

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "victim": self.victim,
            "region": self.region,
            "episodes": self.episodes,
            "packets": self.packets,
            "first_seen": self.first.isoformat(),
            "last_seen": self.last.isoformat(),
            "peak_packets_per_minute": round(self.peak_per_minute, 1),
            "protocols": self.protocols,
        }


def victims(episodes: Sequence[Episode], top: int = 5) -> list[Victim]:
    """The ``top`` most-attacked IPv4 victims by backscatter packets, then the ``top`` IPv6
    ones, each with its episodes aggregated."""
    by: dict[str, list[Episode]] = {}
    for ep in episodes:
        by.setdefault(ep.victim, []).append(ep)
    out = [
        Victim(
            v,
            eps[0].region,
            len(eps),
            sum(e.packets for e in eps),
            min(e.start for e in eps),
            max(e.end for e in eps),
            max(e.packets / max(e.seconds / 60.0, 1.0) for e in eps),
            "+".join(sorted({p for e in eps for p in e.protocols.split("+")})),
        )
        for v, eps in by.items()
    ]
    ranked = sorted(out, key=lambda x: (-x.packets, x.victim))
    return [v for v in ranked if not v.ipv6][:top] + [v for v in ranked if v.ipv6][:top]
