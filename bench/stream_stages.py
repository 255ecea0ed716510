"""Benchmark: the stream worker's per-batch work, stage by stage, in one process (no Kafka, no
Faust), so the cost of each stage is seen apart from the framework's.

Simulates a stretch of 2022Q2, encodes it as the sensor does, then runs what the two agents
run on every message, in order, timing each stage:

- enrich agent: decode, enrich (fingerprints, verdicts, service, GeoIP), encode the
  EnrichedBatch, partial counts split over the counts partitions, encode them;
- count agent: decode each partition's partial, merge it into that partition's windows, close
  windows by watermark, encode the closed windows (WindowCounts);
- merge agent: decode them, add the partitions' windows up, write the table.

Prints µs per packet for each stage and the packets/s of the whole. Compare with
``bench/streams.py`` (the same work in a real worker): the difference is Faust and Kafka.

    .venv/bin/python bench/stream_stages.py [--days 2] [--packets-per-day 1300000] [--partitions 8]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.settings import WorkerSettings
from producers.sim.simulate import simulate_quarter
from schemas.codec import Codec
from schemas.partials import decode_frame, encode_frame
from schemas.windowcounts import decode_window_counts, window_counts_frames
from streams.enrich import Enricher
from streams.fingerprints import SourceVerdicts
from streams.geo import GeoResolver
from streams.merge import WindowMerger
from streams.services import ServiceRegistry
from streams.shard import ShardCounter
from streams.state import detector_of

STAGES = (
    "decode",
    "enrich",
    "encode enriched",
    "partials",
    "encode partials",
    "decode partials",
    "count windows",
    "encode windows",
    "merge windows",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--packets-per-day", type=int, default=1_300_000)
    ap.add_argument("--partitions", type=int, default=8, help="counts partitions")
    ap.add_argument(
        "--close-every", type=float, default=1.0, help="seconds between window closes (the worker default)"
    )
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

    parts = args.partitions
    settings = WorkerSettings()
    detector = detector_of(settings)
    table: dict[bytes, bytes] = {}
    with GeoResolver.default() as geo:
        enricher = Enricher(geo, ServiceRegistry.load(), SourceVerdicts(), codec)
        counters = [
            ShardCounter(s, 1, settings.retention, settings.lateness, args.close_every) for s in range(parts)
        ]
        mergers: dict[str, WindowMerger] = {}
        packets = closed_count = 0
        start = clock()
        for i, frame in enumerate(frames):
            t = clock()
            batch = codec.decode_packets(frame)
            t = timed("decode", t)
            e = enricher.enrich(batch, "bench", 0, i)
            t = timed("enrich", t)
            enricher.encode(e)
            t = timed("encode enriched", t)
            partials = enricher.frames(e, parts, int(batch["ts"].max()))
            t = timed("partials", t)
            messages = [encode_frame(codec, f) for f in partials]
            t = timed("encode partials", t)
            windows = []
            for shard, message in enumerate(messages):
                partial = decode_frame(codec, message)
                t = timed("decode partials", t)
                result = counters[shard].count(partial, i)
                t = timed("count windows", t)
                if result.watermark is not None:
                    for rows in result.closed:
                        windows += window_counts_frames(
                            codec, shard, parts, result.watermark, result.previous, rows
                        )
                t = timed("encode windows", t)
            for message in windows:
                wc = decode_window_counts(codec, message)
                kind = wc.rows.kind
                if kind not in mergers:
                    mergers[kind] = WindowMerger(kind, parts, table, detector, settings.retention)
                mergers[kind].add(wc, i)
                t = timed("merge windows", t)
            packets += len(batch)
        closed_count = sum(m.published_windows for m in mergers.values())
        total = clock() - start
    print(
        f"{packets} packets in {len(frames)} batches, {closed_count} windows published, "
        f"{parts} counts partitions"
    )
    for stage in STAGES:
        print(f"  {stage:16} {spent[stage] / packets * 1e6:6.3f} µs/packet")
    rate = packets / total / 1e6
    print(f"all stages        {total / packets * 1e6:6.3f} µs/packet = {rate:.2f} M packets/s")


if __name__ == "__main__":
    main()
