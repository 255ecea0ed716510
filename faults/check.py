"""After a scenario: packets sent == stored (per day) == counted in the windows (per day), the
store and the windows agree per (day, port), no alert record twice, every injected bad message
in the dead-letter topic with its reason."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faults.observe import Cell

__all__ = ["Verdict", "compare", "per_day"]


@dataclass(frozen=True)
class Verdict:
    """One row of the ``make faults`` table."""

    scenario: str
    recovered_s: float | None  # from the fault's end until every batch sent before it is stored
    sent: int
    store_lost: int = 0
    store_doubled: int = 0
    windows_lost: int = 0
    windows_doubled: int = 0
    cells_differing: int = 0  # (day, port) cells where the store and the windows disagree
    alerts: int = 0
    alerts_twice: int = 0
    dead_expected: int = 0
    dead_missing: int = 0  # injected bad messages not in the dead-letter topic with a reason
    note: str = ""

    @property
    def lost(self) -> int:
        """Packets missing from the store or from the windows."""
        return max(self.store_lost, self.windows_lost)

    @property
    def doubled(self) -> int:
        """Packets counted twice in the store or in the windows."""
        return max(self.store_doubled, self.windows_doubled)

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing doubled, store and windows agree, no alert twice, every dead letter."""
        return (
            self.recovered_s is not None
            and not (self.lost or self.doubled or self.cells_differing)
            and not (self.alerts_twice or self.dead_missing)
        )


def per_day(cells: Counter[Cell]) -> Counter[str]:
    """Packets per day of per-(day, port) counts."""
    out: Counter[str] = Counter()
    for (day, _), n in cells.items():
        out[day] += n
    return out


def _truth_days(truth: Path) -> Counter[str]:
    data: dict[str, Any] = json.loads(truth.read_text())
    return Counter({d["date"]: int(d["packets"]) for d in data["daily"]})


def compare(
    scenario: str,
    recovered_s: float | None,
    truth: Path,
    stored: Counter[Cell],
    counted: Counter[Cell],
    alerts: Counter[str],
    dead: list[dict[str, Any]],
    injected: list[bytes],
    note: str = "",
) -> Verdict:
    """The verdict of a scenario from what was sent (the ground truth) and what was read back."""
    sent = _truth_days(truth)
    s_day, c_day = per_day(stored), per_day(counted)
    days = set(sent) | set(s_day) | set(c_day)
    cells = set(stored) | set(counted)
    reasons = {bytes(d["payload"]) for d in dead if d.get("reason")}
    return Verdict(
        scenario=scenario,
        recovered_s=recovered_s,
        sent=sum(sent.values()),
        store_lost=sum(max(0, sent[d] - s_day[d]) for d in days),
        store_doubled=sum(max(0, s_day[d] - sent[d]) for d in days),
        windows_lost=sum(max(0, sent[d] - c_day[d]) for d in days),
        windows_doubled=sum(max(0, c_day[d] - sent[d]) for d in days),
        cells_differing=sum(1 for c in cells if stored[c] != counted[c]),
        alerts=len(alerts),
        alerts_twice=sum(1 for n in alerts.values() if n > 1),
        dead_expected=len(injected),
        dead_missing=sum(1 for payload in injected if payload not in reasons),
        note=note,
    )
