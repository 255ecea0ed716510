"""Codec throughput: columnar PacketBatch frames against per-record fastavro, same run.

    .venv/bin/python bench/codec.py [--packets 1000000] [--batch 10000] [--repeat 5]

Prints packets/s (median of --repeat runs) to encode and decode columnar batches through
darkscope's codec, the same for one fastavro ``schemaless_writer``/``schemaless_reader`` call
per PacketEvent record, and the ratios.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from fastavro import parse_schema, schemaless_reader, schemaless_writer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from batches import random_batch  # bench/, the script's own folder, is on sys.path

from schemas.codec import PACKET_EVENT, Codec
from schemas.registry import default_schemas


def _median_rate(fn: Callable[[], int], repeat: int) -> float:
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument(
        "--record-packets", type=int, default=100_000, help="packets for the (slow) per-record reference"
    )
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    codec = Codec()
    rng = np.random.default_rng(0)
    batches = [
        random_batch(rng, args.batch, "bench", i, i * 10**9)
        for i in range(max(1, args.packets // args.batch))
    ]
    total = sum(len(b) for b in batches)
    frames = [codec.encode_batch(b) for b in batches]

    def enc_batches() -> int:
        for b in batches:
            codec.encode_batch(b)
        return total

    def dec_batches() -> int:
        n = 0
        for f in frames:
            n += len(codec.decode_packets(f))
        return n

    schema = parse_schema(default_schemas()[PACKET_EVENT])
    rows = [r for b in batches for r in b.rows()][: args.record_packets]
    bodies = []
    for r in rows:
        buf = io.BytesIO()
        schemaless_writer(buf, schema, r)
        bodies.append(buf.getvalue())

    def enc_records() -> int:
        for r in rows:
            buf = io.BytesIO()
            schemaless_writer(buf, schema, r)
        return len(rows)

    def dec_records() -> int:
        for body in bodies:
            schemaless_reader(io.BytesIO(body), schema, None)
        return len(bodies)

    enc_b = _median_rate(enc_batches, args.repeat)
    dec_b = _median_rate(dec_batches, args.repeat)
    enc_r = _median_rate(enc_records, args.repeat)
    dec_r = _median_rate(dec_records, args.repeat)
    frame_bytes = sum(len(f) for f in frames) / total
    record_bytes = sum(len(b) for b in bodies) / len(bodies)
    print(f"columnar batches: {len(batches)} x {args.batch} packets, {frame_bytes:.1f} bytes/packet")
    print(f"per-record events: {len(rows)} records, {record_bytes:.1f} bytes/packet")
    print(
        f"encode  columnar {enc_b / 1e6:8.2f} M packets/s   per-record {enc_r / 1e6:6.3f} M/s"
        f"   ratio {enc_b / enc_r:6.1f}x"
    )
    print(
        f"decode  columnar {dec_b / 1e6:8.2f} M packets/s   per-record {dec_r / 1e6:6.3f} M/s"
        f"   ratio {dec_b / dec_r:6.1f}x"
    )


if __name__ == "__main__":
    main()
