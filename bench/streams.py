"""Benchmark: packets/s through one stream worker (enrich + combiner + windowed counts),
against a bare consume-and-decode loop over the same topic, in the same run.

Publishes a simulated stretch of 2022Q2 (realistic source repetition) as columnar batches,
then:

- bare loop: confluent-kafka consumes the packets topic and decodes every batch to NumPy;
- worker: one `darkscope worker` process (a real Faust worker) consumes the same topic;
  its rate is packets / (timestamp of the last enriched message - that of the first), so
  the worker's start-up is not counted.

The default density, 1.3 M packets a day on a /24 (about 5,000 per address per day), is
of the order large telescopes report per darknet address; a sparser replay (e.g.
--packets-per-day 100000 --days 20) puts more minute windows into every batch, and the
count agent's per-window work (one table write per closed window) weighs more.

Needs a broker: DARKSCOPE_BOOTSTRAP (default 127.0.0.1:9092). Prints figures, never asserts.

    .venv/bin/python bench/streams.py [--days 2] [--packets-per-day 1300000] [--profile FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Consumer, Producer
from profiling import py_spy  # bench/, the script's own folder, is on sys.path

from darkscope.errors import BrokerError
from darkscope.settings import KafkaSettings, SensorSettings, TopicNames
from darkscope.topics import admin_client, ensure_topics, read_range, watermarks
from producers.run import publish_simulation
from schemas.batch import PacketBatch
from schemas.codec import Codec
from streams.app import window_key

REPO = Path(__file__).resolve().parents[1]


def bare_loop(bootstrap: str, topic: str, expected: int) -> float:
    """Packets/s of consume + decode with confluent-kafka."""
    codec = Codec()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 * 2**20,
            "max.partition.fetch.bytes": 16 * 2**20,
        }
    )
    consumer.subscribe([topic])
    n, t0 = 0, 0.0
    try:
        while n < expected:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            if not t0:
                t0 = time.perf_counter()
            n += len(codec.decode_packets(msg.value() or b""))
    finally:
        consumer.close()
    return n / (time.perf_counter() - t0)


def publish_sentinels(bootstrap: str, topic: str, partitions: int, ts_ns: int) -> None:
    """One packet per partition two hours after the data: the watermark then closes every
    data window without waiting for the end-of-input idleness."""
    codec = Codec()
    producer = Producer({"bootstrap.servers": bootstrap})
    for p in range(partitions):
        b = PacketBatch.zeros("bench-sentinel", p, 1)
        b["ts"][:] = ts_ns
        b["ip_version"][:] = 4
        b["src"][:] = 0x01010101
        b["dst"][:] = 0xC6336401
        b["protocol"][:] = 6
        producer.produce(topic, codec.encode_batch(b), partition=p)
    producer.flush(30)


def window_written_at(bootstrap: str, topic: str, key: bytes, deadline: float) -> int | None:
    """Timestamp (ms) of the changelog message that stores the window ``key``.

    Reads each changelog message once (only what was appended since the last look), so that
    watching costs the machine little while the worker runs.
    """
    seen: dict[int, int] = {}
    while time.monotonic() < deadline:
        try:
            marks = watermarks(bootstrap, topic)
        except BrokerError:  # the worker has not created its changelog yet
            time.sleep(1)
            continue
        start = {p: max(lo, seen.get(p, 0)) for p, (lo, _) in marks.items()}
        for msg in read_range(bootstrap, topic, start, {p: hi for p, (_, hi) in marks.items()}):
            if msg.key() == key:
                return int(msg.timestamp()[1])
        seen = {p: hi for p, (_, hi) in marks.items()}
        time.sleep(1)
    return None


def wait_for_members(bootstrap: str, group: str, n: int) -> None:
    """Wait until the consumer group is stable with ``n`` members (workers started)."""
    admin = admin_client(bootstrap)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # the group does not exist yet
            desc = admin.describe_consumer_groups([group])[group].result()
            if len(desc.members) >= n and str(desc.state).endswith("STABLE"):
                return
        time.sleep(1)
    raise SystemExit(f"{n} workers did not join group {group} within 5 minutes")


def enriched_done(bootstrap: str, topic: str, messages: int, worker: subprocess.Popen[bytes]) -> None:
    """Wait until the worker has written one enriched message per input message (watching the
    offsets only: re-reading the topic while the worker runs would take CPU from it)."""
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited with {worker.returncode}")
        with contextlib.suppress(BrokerError):
            if sum(hi for _, hi in watermarks(bootstrap, topic).values()) >= messages:
                return
        time.sleep(1)
    raise SystemExit("the worker did not enrich every batch within 15 minutes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--packets-per-day", type=int, default=1_300_000)
    ap.add_argument("--profile", metavar="FILE", help="record the worker with py-spy into FILE (speedscope)")
    ap.add_argument(
        "--workers", type=int, default=1, help="worker processes of one app (sharing the 4 partitions)"
    )
    args = ap.parse_args()
    bootstrap = os.environ.get("DARKSCOPE_BOOTSTRAP", "127.0.0.1:9092")
    tag = uuid.uuid4().hex[:8]
    topics = TopicNames(**{f: f"bench.streams.{tag}.{f}" for f in TopicNames.model_fields})
    kafka = KafkaSettings(bootstrap=bootstrap, partitions=4)
    ensure_topics(kafka, topics.all())
    app_id = f"bench-{tag}"
    try:
        data_end = int(datetime(2022, 4, 1, tzinfo=UTC).timestamp()) + args.days * 86400

        def publish() -> int:
            report, _ = publish_simulation(
                SensorSettings(sensor_id="bench", prefixes=["198.51.100.0/24"]),
                kafka,
                topics,
                quarter="2022Q2",
                packets_per_day=args.packets_per_day,
                days=args.days,
                flat=False,
                seed=1,
                truth_path=None,
            )
            total = report.packets_sent
            publish_sentinels(bootstrap, topics.packets, 4, (data_end + 7200) * 10**9)
            return total

        env = {
            **os.environ,
            "DARKSCOPE_BOOTSTRAP": bootstrap,
            "DARKSCOPE_PARTITIONS": "4",
            "DARKSCOPE_WORKER_APP_ID": app_id,
            "DARKSCOPE_WORKER_IDLE_AFTER": "3",
        }
        env.update({f"DARKSCOPE_TOPIC_{f.upper()}": getattr(topics, f) for f in TopicNames.model_fields})
        total = publish() if args.workers == 1 else 0
        with tempfile.TemporaryDirectory() as tmp:
            workers = [
                subprocess.Popen(
                    [sys.executable, "-m", "darkscope", "worker", "--loglevel", "warn"],
                    env={**env, "DARKSCOPE_WORKER_DATA_DIR": f"{tmp}/w{i}"},
                    cwd=REPO,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for i in range(args.workers)
            ]
            worker = workers[0]
            if args.workers > 1:
                # Several workers: all of them in the group before any data, so that no
                # rebalance falls in the measurement.
                wait_for_members(bootstrap, app_id, args.workers)
                total = publish()
            try:
                with py_spy(worker.pid, args.profile, "-r", "50", "--idle"):
                    inputs = sum(hi for _, hi in watermarks(bootstrap, topics.packets).values())
                    enriched_done(bootstrap, topics.enriched, inputs, worker)
                    counted_at = window_written_at(
                        bootstrap,
                        f"{app_id}-window_counts-changelog",
                        window_key("sensor", "1h", data_end - 3600),
                        time.monotonic() + 300,
                    )
            finally:
                for w in workers:
                    w.terminate()
                for w in workers:
                    w.wait(60)
        bare = bare_loop(bootstrap, topics.packets, total)
        codec = Codec()
        done, stamps = 0, []
        seen: set[tuple[int, int]] = set()
        marks = watermarks(bootstrap, topics.enriched)
        for msg in read_range(
            bootstrap,
            topics.enriched,
            {p: lo for p, (lo, _) in marks.items()},
            {p: hi for p, (_, hi) in marks.items()},
        ):
            rec = codec.decode(msg.value() or b"").record
            if (rec["source_partition"], rec["source_offset"]) in seen:
                continue  # enriched again after a rebalance (workers joining): count it once
            seen.add((rec["source_partition"], rec["source_offset"]))
            done += int(rec["packets"]["count"])
            stamps.append(msg.timestamp()[1])
        span = (max(stamps) - min(stamps)) / 1000 if len(stamps) > 1 else float("nan")
        # The last data hour closes after all its minutes: counting is done when it is stored.
        counts_span = ((counted_at or 0) - min(stamps)) / 1000
        rate = done / span
        procs = "one worker process" if args.workers == 1 else f"{args.workers} worker processes"
        print(f"{total} packets in {len(stamps)} batches, 4 partitions, {procs}")
        print(f"bare consume + decode loop   {bare / 1e6:6.2f} M packets/s")
        print(
            f"worker enrich                {rate / 1e6:6.2f} M packets/s   {rate / bare:.2f}x the bare loop"
            f" ({done} packets enriched in {span:.1f} s)"
        )
        if counted_at is None:
            print("  counted: the last data hour was not stored within 5 minutes")
        else:
            print(
                f"worker enrich + counts       {done / counts_span / 1e6:6.2f} M packets/s"
                f"   {done / counts_span / bare:.2f}x the bare loop (the last data hour's window stored"
                f" {counts_span:.1f} s after the first enriched batch)"
            )
    finally:
        admin = admin_client(bootstrap)
        names = [*topics.all(), f"{app_id}-window_counts-changelog"]
        for fut in admin.delete_topics(names).values():
            with contextlib.suppress(Exception):  # a topic the run never created
                fut.result()


if __name__ == "__main__":
    main()
