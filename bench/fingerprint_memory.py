"""Benchmark: the memory a worker's fingerprint state holds per tracked source.

:class:`streams.fingerprints.SourceVerdicts` keeps, for every source that matched a rule (the
tools' header shapes and backscatter), its packets since the first match, its matches per rule
and its confirmed verdicts, at most ``DARKSCOPE_WORKER_FINGERPRINT_SOURCES`` sources (the least
recently seen are forgotten). This feeds it batches of 10,000 sources that each match a rule
(the worst case: on a real darknet most sources match nothing and are never tracked), and
prints the memory Python allocated for it (tracemalloc: what the state holds, apart from the
interpreter) and the process's RSS as the sources add up, past the capacity.

    .venv/bin/python bench/fingerprint_memory.py [--sources 1500000] [--capacity 1000000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from core.broker import process_rss
from streams.fingerprints import RULES, SourceVerdicts

MIB = 1 << 20
BATCH = 10_000


def main() -> None:
    """Feed the sources, printing the figures every tenth of the way."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=int, default=1_500_000, help="distinct sources fed in all")
    ap.add_argument("--capacity", type=int, default=1_000_000, help="sources kept (the worker's default)")
    args = ap.parse_args()
    verdicts = SourceVerdicts(capacity=args.capacity)
    rng = np.random.default_rng(0)
    batches = max(1, args.sources // BATCH)
    every = max(1, batches // 10)
    print(
        f"{len(RULES)} rules; capacity {args.capacity:,} sources; batches of {BATCH:,} sources, each matching"
    )
    tracemalloc.start()
    fed = 0
    t0 = time.perf_counter()
    for i in range(batches):
        keys = np.unique(rng.integers(0, 2**63, BATCH, dtype=np.uint64))
        hits = np.uint16(1) << rng.integers(0, len(RULES), len(keys)).astype(np.uint16)
        verdicts.update(np.zeros(len(keys)), hits, (keys, np.arange(len(keys))))
        fed += len(keys)
        if (i + 1) % every == 0 or i + 1 == batches:
            now, peak = tracemalloc.get_traced_memory()
            rss = process_rss(os.getpid()) or 0
            print(
                f"{fed:>11,} sources fed, {len(verdicts):>9,} tracked: {now / MIB:6.0f} MiB held "
                f"({now / max(len(verdicts), 1):.0f} bytes a source), peak {peak / MIB:.0f} MiB, "
                f"RSS {rss / MIB:.0f} MiB"
            )
    took = time.perf_counter() - t0
    print(f"{fed / took / 1e6:.2f} M sources/s folded in (tracemalloc on)")


if __name__ == "__main__":
    main()
