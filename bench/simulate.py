"""Simulator and capture-writer throughput: a quarter of generated PacketBatches, then pcap/pcapng.

    .venv/bin/python bench/simulate.py [--packets-per-day 100000] [--days N] [--write-days 7]
        [--seed 0] [--out DIR]

Prints: geo range loading (cold, then memoised), generating the quarter (packets/s and wall
time), building the ground-truth JSON, and encoding ``--write-days`` days as pcap and pcapng
(packets/s, MB/s); with ``--out`` it also times ``run_simulation`` writing daily pcap files
there. Benchmarks print figures; they assert nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from producers.pcapwriter import encode_records
from producers.sim.regions import load_region_ranges
from producers.sim.simulate import run_simulation, simulate_quarter
from schemas.batch import PacketBatch


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--packets-per-day", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=None)
    parser.add_argument("--write-days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    t0 = time.perf_counter()
    load_region_ranges()
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    sim = simulate_quarter(packets_per_day=args.packets_per_day, days=args.days, seed=args.seed)
    warm = time.perf_counter() - t0
    print(f"geo ranges: cold {cold:.2f} s (probing the DB), then {warm * 1000:.1f} ms (memoised)")

    first = sim.days[0]
    cutoff = int(
        datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp() + args.write_days * 86_400
    )
    t0 = time.perf_counter()
    packets = batches = 0
    kept: list[PacketBatch] = []  # the first --write-days days, encoded below
    for batch in sim:
        packets += len(batch)
        batches += 1
        if batch["ts"][0] < cutoff * 10**9:
            kept.append(batch)
    gen = time.perf_counter() - t0
    print(
        f"generate {len(sim.days)} days x {args.packets_per_day:,}/day: {packets:,} packets in "
        f"{batches:,} batches, {gen:.2f} s = {packets / gen / 1e6:.2f} M packets/s"
    )
    t0 = time.perf_counter()
    text = json.dumps(sim.ground_truth().to_dict())
    print(f"ground truth: {time.perf_counter() - t0:.2f} s, {len(text) / 1e6:.2f} MB of JSON")

    n_write = sum(len(b) for b in kept)
    for fmt in ("pcap", "pcapng"):
        t0 = time.perf_counter()
        size = sum(len(encode_records(b, "pcap" if fmt == "pcap" else "pcapng")) for b in kept)
        dt = time.perf_counter() - t0
        print(
            f"encode {fmt}: {n_write:,} packets in {dt:.2f} s = {n_write / dt / 1e6:.2f} M packets/s, "
            f"{size / dt / 1e6:.0f} MB/s ({size / n_write:.1f} bytes/packet)"
        )
    if args.out is not None:
        t0 = time.perf_counter()
        result = run_simulation(
            args.out, packets_per_day=args.packets_per_day, days=args.days, seed=args.seed
        )
        dt = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in result.captures)
        print(
            f"run_simulation to {args.out}: {result.packets:,} packets, {len(result.captures)} files, "
            f"{size / 1e6:.0f} MB in {dt:.2f} s = {result.packets / dt / 1e6:.2f} M packets/s"
        )


if __name__ == "__main__":
    main()
