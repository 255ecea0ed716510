"""Benchmark: the alerts the demo's quarters raise, counted without Kafka or Faust.

Simulates what ``darkscope demo`` publishes (2022Q1 then 2022Q2, one sensor on
198.51.100.0/24, seed 0), enriches every batch and runs the count and merge stages in one
process (:class:`streams.local.LocalCounting`, the worker's own code), then prints the alerts
per quarter by kind, severity and state, and checks each planted DoS episode of the ground
truth against the backscatter alerts: how many alerts name its victim in its time span, and
their severity.

    .venv/bin/python bench/alerts_quarters.py [--packets-per-day 20000] [--days N] [--partitions 4]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.settings import WorkerSettings
from producers.sim.simulate import simulate_quarter
from schemas.codec import Codec
from streams.enrich import Enricher
from streams.fingerprints import SourceVerdicts
from streams.geo import GeoResolver
from streams.local import LocalCounting
from streams.services import ServiceRegistry
from streams.state import detector_of

QUARTERS = ("2022Q1", "2022Q2")
PREFIX = "198.51.100.0/24"


def _quarter_of(a: dict[str, Any]) -> str:
    start: datetime = a["window_start"]
    return f"{start.year}Q{(start.month - 1) // 3 + 1}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets-per-day", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=None, help="only the first N days of each quarter")
    ap.add_argument("--partitions", type=int, default=4, help="counts partitions (the demo's 4)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    settings = WorkerSettings()
    codec = Codec()
    local = LocalCounting(settings, args.partitions, 1, detector_of(settings), keep_log=False)
    episodes: list[dict[str, Any]] = []
    packets = 0
    with GeoResolver.default() as geo:
        enricher = Enricher(geo, ServiceRegistry.load(), SourceVerdicts(), codec)
        offset = 0
        for quarter in QUARTERS:
            sim = simulate_quarter(
                quarter, packets_per_day=args.packets_per_day, prefix=PREFIX, days=args.days, seed=0
            )
            for batch in sim.batches():
                packets += local.enrich(enricher, batch, offset)
                offset += 1
            truth = sim.ground_truth().to_dict()
            for v in truth["backscatter"]["victims"]:
                episodes += [{"victim": v["victim"], **ep} for ep in v["episodes"]]
    local.idle(0)
    local.run()
    # Every packets partition idle: the merge stage closes the episodes still open.
    alerts = local.alerts
    print(f"{packets:,} packets, {len(alerts)} alerts ({time.perf_counter() - t0:.0f} s)")
    for quarter in QUARTERS:
        mine = [a for a in alerts if _quarter_of(a) == quarter]
        final = {a["alert_id"]: a for a in mine}  # an alert's last record: its final grade
        graded = Counter((a["kind"], a["severity"]) for a in final.values())
        kinds = Counter(a["kind"] for a in mine)
        sev = Counter(a["severity"] for a in mine)
        states = Counter(a["evidence"].get("state", "-") for a in mine)
        print(
            f"{quarter}: {len(mine)} alert records, {len({a['alert_id'] for a in mine})} alerts; "
            f"by severity {dict(sev)}; by kind {dict(kinds)}; by state {dict(states)}"
        )
        print(f"  alerts by kind and final severity: {dict(sorted(graded.items()))}")
    _episodes(alerts, episodes)


def _episodes(alerts: list[dict[str, Any]], episodes: list[dict[str, Any]]) -> None:
    """Each planted episode: the alerts on its victim that start in its span, and their grade."""
    back = [a for a in alerts if a["kind"] == "backscatter_episode"]
    per_episode = []
    for ep in episodes:
        start, end = datetime.fromisoformat(ep["start"]), datetime.fromisoformat(ep["end"])
        mine = [
            a
            for a in back
            if a["key"] == ep["victim"] and start.replace(second=0, microsecond=0) <= a["window_start"] <= end
        ]
        ids = {a["evidence"].get("episode_id", a["alert_id"]) for a in mine}
        per_episode.append((ep, len(mine), len(ids), {a["severity"] for a in mine}))
    found = sum(1 for _, n, _, _ in per_episode if n)
    one = sum(1 for _, _, k, _ in per_episode if k == 1)
    print(
        f"planted DoS episodes: {len(episodes)}; with an alert: {found}; as exactly one episode id: {one}; "
        f"backscatter alerts: {len(back)} ({len(back) / max(len(episodes), 1):.1f} per episode)"
    )
    by_grade: dict[str, list[float]] = {}
    for ep, _, _, sev in per_episode:
        grade = max(sev, key=("info", "warning", "critical").index) if sev else "none"
        by_grade.setdefault(grade, []).append(ep["packets"] / max(ep["seconds"], 1) * 60)
    for grade, rates in sorted(by_grade.items(), key=lambda kv: min(kv[1])):
        print(
            f"  {grade:8} {len(rates):5} episodes, planted rate {min(rates):.0f}-{max(rates):.0f} packets/min"
        )
    for ep, n, k, sev in sorted(per_episode, key=lambda x: x[0]["packets"] / max(x[0]["seconds"], 1))[::10]:
        rate = ep["packets"] / max(ep["seconds"], 1) * 60
        print(
            f"  {ep['victim']:15} {rate:6.1f} packets/min over {ep['seconds']:5.0f} s: "
            f"{n} records, {k} alert ids, {sorted(sev)}"
        )


if __name__ == "__main__":
    main()
