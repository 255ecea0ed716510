"""Benchmark: the memory the two counting stages hold, per distinct source, as a worker runs.

Feeds synthetic partial counts (3 SYNs per source, to a random port, spread over the hour)
through every counts partition and the merge stage in one process (:class:`streams.local.
LocalCounting`, the agents' code without Kafka or Faust), with the worker's default settings
(``DARKSCOPE_WORKER_RETENTION`` etc.), and prints the process's resident memory:

- 100k and 1M distinct sources in one hour: peak RSS, and RSS once the windows closed;
- a day of N distinct sources an hour at a compressed rate: RSS after every few hours
  (flat after warm-up when what a late packet needs is released on time).

Each scenario runs in a fresh process (peak RSS is per process).

    .venv/bin/python bench/count_memory.py [--partitions 8] [--day-sources 1000000] [--hours 24]
        [--hour-sources 100000 1000000]
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from core.settings import WorkerSettings
from schemas.partials import PartialFrame
from streams.combiner import aggregate
from streams.local import LocalCounting
from streams.state import detector_of

T0 = 1_648_771_200  # 2022-04-01 00:00 UTC
BATCH = 10_000
REGIONS = [f"R{i}" for i in range(40)]
PORTS = [f"{p}/tcp" for p in range(1, 2001)]


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MiB."""
    fields = dict(
        line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def feed_hour(
    lc: LocalCounting, hour: int, sources: int, rng: np.random.Generator, offset: list[int]
) -> None:
    """``sources`` new distinct sources sending 3 SYNs each within hour ``hour``."""
    base = np.uint64(0x01000000 + hour * sources)
    addrs = np.repeat(np.arange(sources, dtype=np.uint64) + base, 3)
    ts = (T0 + hour * 3600 + rng.integers(0, 3600, len(addrs))).astype(np.int64) * 10**9
    order = np.argsort(ts, kind="stable")
    addrs, ts = addrs[order], ts[order]
    region = (addrs % np.uint64(len(REGIONS))).astype(np.int64)
    port = rng.integers(0, len(PORTS), len(addrs)).astype(np.int64)
    shards = lc.shards
    for a in range(0, len(ts), BATCH):
        sl = slice(a, a + BATCH)
        t, s = ts[sl], addrs[sl]
        kinds = [
            aggregate("port", t, port[sl], PORTS, s, shards),
            aggregate("region", t, region[sl], REGIONS, s, shards),
            aggregate("fp_region", t, region[sl], [f"mirai/{r}" for r in REGIONS], s, shards),
            aggregate("sensor", t, np.zeros(len(t), np.int64), ["sensor-1"], s, shards),
        ]
        wm = int(t.max())
        lc.publish(
            [PartialFrame(tuple(k[i] for k in kinds), 0, wm, offset[0], i, shards) for i in range(shards)]
        )
        offset[0] += 1
        lc.run()


def scenario(name: str, partitions: int, sources: int, hours: int) -> None:
    settings = WorkerSettings()
    # A worker's topics are not in its memory: processed messages are dropped.
    lc = LocalCounting(settings, partitions, 1, detector_of(settings), keep_log=False)
    rng = np.random.default_rng(1)
    offset = [0]
    start = time.perf_counter()
    before, _ = rss_mib()
    if name == "hour":
        feed_hour(lc, 0, sources, rng, offset)
        _, peak = rss_mib()
        lc.idle(0)
        lc.run()
        # The next hour's first minutes move the watermark past the retention of this one.
        feed_hour(lc, 1 + settings.retention // 3600, 1000, rng, offset)
        gc.collect()
        settled, _ = rss_mib()
        print(
            f"{sources:>9,} distinct sources in an hour: peak RSS {peak:6.0f} MiB, "
            f"settled {settled:6.0f} MiB (start {before:.0f} MiB; "
            f"{(peak - before) * 2**20 / sources:.0f} bytes per source at the peak; "
            f"{time.perf_counter() - start:.0f} s)"
        )
        return
    figures = []
    for hour in range(hours):
        feed_hour(lc, hour, sources, rng, offset)
        gc.collect()
        figures.append(rss_mib()[0])
        if (hour + 1) % 4 == 0 or hour == hours - 1:
            print(f"  after hour {hour + 1:2d}: RSS {figures[-1]:6.0f} MiB", flush=True)
    print(
        f"a day of {sources:,} distinct sources an hour: peak RSS {rss_mib()[1]:.0f} MiB; hours 6-{hours} "
        f"min {min(figures[5:]):.0f} / max {max(figures[5:]):.0f} MiB ({time.perf_counter() - start:.0f} s)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partitions", type=int, default=8, help="counts partitions (all in this one worker)")
    ap.add_argument(
        "--day-sources", type=int, default=1_000_000, help="distinct sources per hour of the day run"
    )
    ap.add_argument("--hours", type=int, default=24, help="hours of the day run (at least 6)")
    ap.add_argument(
        "--hour-sources",
        type=int,
        nargs="+",
        default=[100_000, 1_000_000],
        help="distinct sources of each one-hour run",
    )
    ap.add_argument("--scenario", nargs=3, metavar=("NAME", "SOURCES", "HOURS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.scenario:
        name, sources, hours = args.scenario
        scenario(name, args.partitions, int(sources), int(hours))
        return
    retention = WorkerSettings().retention
    print(f"one worker, {args.partitions} counts partitions, retention {retention} s, 3 SYNs per source")
    runs = [*(("hour", n, 1) for n in args.hour_sources), ("day", args.day_sources, args.hours)]
    for name, sources, hours in runs:
        cmd = [
            sys.executable,
            __file__,
            "--partitions",
            str(args.partitions),
            "--scenario",
            name,
            str(sources),
            str(hours),
        ]
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
