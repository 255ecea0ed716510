"""Benchmark: pcap -> parsed columnar batches -> acknowledged Kafka messages, one core.

Builds a ~1M-packet pcap (real records replicated, as bench/parse.py does), then times in
the same run:

- parse: ``open_capture`` until every PacketBatch is out;
- sensor: the whole ``darkscope sensor --pcap`` path (parse, prefix filter, Avro framing,
  confluent-kafka produce, flush until every message is acknowledged by the broker);
- ``tcpdump -r FILE -w /dev/null`` (the reference).

Needs a broker: DARKSCOPE_BOOTSTRAP (default 127.0.0.1:9092; `darkscope broker up`).
Prints medians, ratios and the per-CPU-second rates; never asserts.

    .venv/bin/python bench/sensor.py [--packets 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from parse import build_file, cpu_seconds, default_source

from core.settings import KafkaSettings, SensorSettings, TopicNames
from core.topics import admin_client, ensure_topics
from producers.capture import open_capture
from producers.run import replay_files


def _time(fn: object, repeat: int) -> tuple[float, float, int]:
    walls, cpus, n = [], [], 0
    for _ in range(repeat):
        c0, t0 = cpu_seconds(), time.perf_counter()
        n = fn()  # type: ignore[operator]
        walls.append(time.perf_counter() - t0)
        cpus.append(cpu_seconds() - c0)
    return statistics.median(walls), statistics.median(cpus), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    bootstrap = os.environ.get("DARKSCOPE_BOOTSTRAP", "127.0.0.1:9092")
    tcpdump = shutil.which("tcpdump")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.pcap"
        frames = build_file(default_source(), args.packets, path)

        def parse() -> int:
            with open_capture(path) as cap:
                return sum(len(b) for b in cap)

        tag = uuid.uuid4().hex[:8]
        topics = TopicNames(packets=f"bench.sensor.{tag}.packets", sensors=f"bench.sensor.{tag}.sensors")
        kafka = KafkaSettings(bootstrap=bootstrap, partitions=8)
        ensure_topics(kafka, [topics.packets, topics.sensors])
        settings = SensorSettings(sensor_id="bench", prefixes=[])

        def sensor() -> int:
            reports = replay_files([str(path)], settings, kafka, topics)
            return sum(r.packets_sent for r in reports)

        def reference() -> int:
            if tcpdump is None:
                return 0
            subprocess.run([tcpdump, "-r", str(path), "-w", "/dev/null"], check=True, capture_output=True)
            return frames

        try:
            p_wall, p_cpu, n_parse = _time(parse, args.repeat)
            s_wall, s_cpu, n_sent = _time(sensor, args.repeat)
            t_wall, _, _ = _time(reference, args.repeat) if tcpdump else (float("nan"), 0.0, 0)
        finally:
            admin = admin_client(bootstrap)
            for fut in admin.delete_topics([topics.packets, topics.sensors]).values():
                fut.result()
    print(f"capture: {frames} frames, {n_parse} IP packets ({path.name}, {args.repeat} runs, medians)")
    print(f"tcpdump -r -w /dev/null      {frames / t_wall / 1e6:7.2f} M packets/s  (reference 1.00)")
    print(
        f"pcap -> parsed batches       {n_parse / p_wall / 1e6:7.2f} M packets/s  "
        f"{(n_parse / p_wall) / (frames / t_wall):.2f}x tcpdump; {n_parse / p_cpu / 1e6:.2f} M per CPU-second"
    )
    print(
        f"pcap -> acked Kafka messages {n_sent / s_wall / 1e6:7.2f} M packets/s  "
        f"{(n_sent / s_wall) / (frames / t_wall):.2f}x tcpdump; {n_sent / s_cpu / 1e6:.2f} M per CPU-second "
        f"(this process; the broker runs on the other core)"
    )


if __name__ == "__main__":
    main()
