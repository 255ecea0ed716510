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

import orjson
from confluent_kafka import Consumer, Producer
from profiling import py_spy  # bench/, the script's own folder, is on sys.path

from core.errors import BrokerError
from core.settings import KafkaSettings, SensorSettings, TopicNames
from core.topics import admin_client, ensure_topics, read_range, watermarks
from producers.run import publish_simulation
from schemas.batch import PacketBatch
from schemas.codec import Codec
from schemas.partials import decode_frame
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


def stamps_of(bootstrap: str, topic: str) -> list[int]:
    """Timestamps (ms) of every message in ``topic``."""
    marks = watermarks(bootstrap, topic)
    lo = {p: a for p, (a, _) in marks.items()}
    hi = {p: b for p, (_, b) in marks.items()}
    return [int(m.timestamp()[1]) for m in read_range(bootstrap, topic, lo, hi)]


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


def counted_packets(bootstrap: str, changelog: str, data_end: int) -> int:
    """Packets in the sensor kind's hour windows before ``data_end`` (the newest value of each
    key; the sentinels' hour comes after)."""
    latest: dict[bytes, bytes] = {}
    marks = watermarks(bootstrap, changelog)
    lo = {p: a for p, (a, _) in marks.items()}
    for msg in read_range(bootstrap, changelog, lo, {p: b for p, (_, b) in marks.items()}):
        key = msg.key() or b""
        # (A tombstone is a window that left the table after the retention: not a count.)
        if key.startswith(b"sensor|1h|") and int(key.split(b"|")[2]) < data_end and msg.value() is not None:
            latest[key] = msg.value() or b"{}"
    return sum(sum(orjson.loads(v)["packets"]) for v in latest.values())


def print_shares(bootstrap: str, topics: TopicNames) -> None:
    """Per counts partition: the PartialCounts messages, the rows (per-minute packet rows and
    distinct-address triples of every kind) and packets it received; max/mean of the rows."""
    codec = Codec()
    marks = watermarks(bootstrap, topics.counts)
    stats = {p: [0, 0, 0] for p in marks}
    for msg in read_range(
        bootstrap,
        topics.counts,
        {p: lo for p, (lo, _) in marks.items()},
        {p: hi for p, (_, hi) in marks.items()},
    ):
        frame = decode_frame(codec, msg.value() or b"")
        row = stats[msg.partition() or 0]
        row[0] += 1
        row[1] += sum(len(p.minute) + len(p.pair_addr) for p in frame.partials)
        row[2] += sum(p.total_packets for p in frame.partials if p.kind == "sensor")
    print("counts partition   messages        rows     packets")
    for p, (n, rows, packets) in sorted(stats.items()):
        print(f"{p:16d} {n:10d} {rows:11d} {packets:11d}")
    rows = [r for _, r, _ in stats.values()]
    mean = sum(rows) / len(rows)
    print(
        f"rows max/mean {max(rows) / mean:.2f}, min/mean {min(rows) / mean:.2f}; "
        f"partitions without rows: {sum(r == 0 for r in rows)}"
    )
    windows = watermarks(bootstrap, topics.windows)
    print(
        "windows messages per partition (merge stage, keyed by kind): "
        f"{[hi for _, hi in sorted(windows.values())]}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--packets-per-day", type=int, default=1_300_000)
    ap.add_argument("--profile", metavar="FILE", help="record the worker with py-spy into FILE (speedscope)")
    ap.add_argument(
        "--workers", type=int, default=1, help="worker processes of one app (sharing the partitions)"
    )
    ap.add_argument("--partitions", type=int, default=8, help="partitions of every topic")
    ap.add_argument("--worker-log", metavar="FILE", help="the first worker's log (info level) into FILE")
    args = ap.parse_args()
    bootstrap = os.environ.get("DARKSCOPE_BOOTSTRAP", "127.0.0.1:9092")
    tag = uuid.uuid4().hex[:8]
    topics = TopicNames(**{f: f"bench.streams.{tag}.{f}" for f in TopicNames.model_fields})
    parts = args.partitions
    kafka = KafkaSettings(bootstrap=bootstrap, partitions=parts)
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
            publish_sentinels(bootstrap, topics.packets, parts, (data_end + 7200) * 10**9)
            return total

        env = {
            **os.environ,
            "DARKSCOPE_BOOTSTRAP": bootstrap,
            "DARKSCOPE_PARTITIONS": str(parts),
            "DARKSCOPE_WORKER_APP_ID": app_id,
            "DARKSCOPE_WORKER_IDLE_AFTER": "3",
        }
        env.update({f"DARKSCOPE_TOPIC_{f.upper()}": getattr(topics, f) for f in TopicNames.model_fields})
        total = publish() if args.workers == 1 else 0
        log = open(args.worker_log, "wb") if args.worker_log else None  # noqa: SIM115 - closed below
        with tempfile.TemporaryDirectory() as tmp:
            workers = [
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "darkscope",
                        "worker",
                        "--loglevel",
                        "info" if log and i == 0 else "warn",
                    ],
                    env={**env, "DARKSCOPE_WORKER_DATA_DIR": f"{tmp}/w{i}"},
                    cwd=REPO,
                    stdout=log if log and i == 0 else subprocess.DEVNULL,
                    stderr=subprocess.STDOUT if log and i == 0 else subprocess.DEVNULL,
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
                with py_spy(worker.pid, args.profile, "-r", "100"):
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
        print(f"{total} packets in {len(stamps)} batches, {parts} partitions, {procs}")
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
            print(
                f"enrich + counts / enrich      {span / counts_span:.2f}x"
                " (1.00: counting ends with enrichment)"
            )
        # Where the time after enrichment goes: the counts partitions' last partials (sent by
        # the enrich agent), the merge stage's last input (sent by the count agent), storage.
        first = min(stamps)
        last_counts = (max(stamps_of(bootstrap, topics.counts)) - first) / 1000
        windows_stamps = stamps_of(bootstrap, topics.windows)
        last_windows = (max(windows_stamps) - first) / 1000 if windows_stamps else float("nan")
        print(
            f"timeline (s after the first enriched batch): last batch enriched {span:.1f}, last partial sent "
            f"{last_counts:.1f}, last window message {last_windows:.1f} (idle markers included), "
            f"last data hour stored {counts_span:.1f}"
        )
        if windows_stamps:
            ws = sorted((w - first) / 1000 for w in windows_stamps)
            print(
                "window messages sent at (s): "
                + ", ".join(
                    f"{q}% {ws[min(len(ws) - 1, len(ws) * q // 100)]:.1f}" for q in (10, 25, 50, 75, 90)
                )
            )
        print_shares(bootstrap, topics)
        counted = counted_packets(bootstrap, f"{app_id}-window_counts-changelog", data_end)
        verdict = "exact" if counted == total else "NOT exact"
        print(f"packets in the sensor hour windows of the data: {counted} of {total} sent ({verdict})")
    finally:
        admin = admin_client(bootstrap)
        names = [*topics.all(), f"{app_id}-window_counts-changelog"]
        for fut in admin.delete_topics(names).values():
            with contextlib.suppress(Exception):  # a topic the run never created
                fut.result()


if __name__ == "__main__":
    main()
