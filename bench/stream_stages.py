"""Benchmark: the stream worker's per-batch work, stage by stage, in one process (no Kafka, no
Faust), so the cost of each stage is seen apart from the framework's.

Simulates a stretch of 2022Q2, encodes it as the sensor does, then runs what the two agents
run on every message, in order, timing each stage:

- enrich agent: decode, enrich (fingerprints, verdicts, service, GeoIP), encode the
  EnrichedBatch, partial counts per kind, encode them;
- count agent: decode each partial, merge it into the windows, close windows by watermark,
  turn the closed windows into table writes.

Prints µs per packet for each stage and the packets/s of the whole. Compare with
``bench/streams.py`` (the same work in a real worker): the difference is Faust and Kafka.

    .venv/bin/python bench/stream_stages.py [--days 2] [--packets-per-day 1300000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from producers.simulate import simulate_quarter
from schemas.codec import Codec
from streams.counts import KindWindows, WatermarkTracker
from streams.enrich import Enricher, decode_partial
from streams.fingerprints import SourceVerdicts
from streams.geo import GeoResolver
from streams.services import ServiceRegistry
from streams.windowstore import MinuteBundles

STAGES = (
    "decode",
    "enrich",
    "encode enriched",
    "partials",
    "encode partials",
    "decode partials",
    "merge windows",
    "close windows",
    "table writes",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--packets-per-day", type=int, default=1_300_000)
    args = ap.parse_args()
    sim = simulate_quarter(
        "2022Q2", packets_per_day=args.packets_per_day, days=args.days, seed=1, batch_size=10_000
    )
    codec = Codec()
    frames = [codec.encode_batch(b) for b in sim.batches()]
    spent: Counter[str] = Counter()
    clock = time.perf_counter

    def timed(stage: str, t0: float) -> float:
        now = clock()
        spent[stage] += now - t0
        return now

    with GeoResolver.default() as geo:
        enricher = Enricher(geo, ServiceRegistry.load(), SourceVerdicts(), codec)
        windows: dict[str, tuple[KindWindows, WatermarkTracker]] = {}
        bundles = MinuteBundles()
        packets = closed_count = 0
        start = clock()
        for i, frame in enumerate(frames):
            t = clock()
            batch = codec.decode_packets(frame)
            t = timed("decode", t)
            e = enricher.enrich(batch, "bench", i % 4, i)
            t = timed("enrich", t)
            enricher.encode(e)
            t = timed("encode enriched", t)
            parts = enricher.partials(e)
            t = timed("partials", t)
            wm = int(batch["ts"].max())
            messages = [enricher.encode_partial(p, e, wm) for p in parts]
            t = timed("encode partials", t)
            for message in messages:
                partial, _, watermark, _ = decode_partial(codec, message)
                t = timed("decode partials", t)
                if partial.kind not in windows:
                    windows[partial.kind] = (KindWindows(partial.kind, 86400), WatermarkTracker(1, 60))
                kind_windows, tracker = windows[partial.kind]
                kind_windows.add(partial)
                tracker.update(0, watermark)
                t = timed("merge windows", t)
                closed = kind_windows.close_until(tracker.current_s() or 0)
                t = timed("close windows", t)
                bundles.writes(closed)
                bundles.forget(partial.kind, kind_windows.horizon)
                t = timed("table writes", t)
                closed_count += len(closed)
            packets += len(batch)
        total = clock() - start
    print(f"{packets} packets in {len(frames)} batches, {closed_count} windows closed")
    for stage in STAGES:
        print(f"  {stage:16} {spent[stage] / packets * 1e6:6.3f} µs/packet")
    rate = packets / total / 1e6
    print(f"all stages        {total / packets * 1e6:6.3f} µs/packet = {rate:.2f} M packets/s")


if __name__ == "__main__":
    main()
