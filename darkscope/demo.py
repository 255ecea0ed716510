"""``make demo``: the pipeline as far as it is built, run end to end on this machine."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from darkscope import broker as broker_mod
from darkscope.settings import BrokerSettings, KafkaSettings, TopicNames
from darkscope.topics import ensure_topics, read_range, watermarks
from producers.kafka import Publisher
from schemas.batch import PacketBatch
from schemas.codec import Codec

__all__ = ["random_batch", "run_demo"]


def random_batch(rng: np.random.Generator, n: int, sensor_id: str, batch_seq: int, t0_ns: int) -> PacketBatch:
    """A batch of ``n`` plausible random IPv4 TCP/UDP packets (stand-in until the simulator)."""
    b = PacketBatch.zeros(sensor_id, batch_seq, n)
    c = b.columns
    c["ts"][:] = t0_ns + np.sort(rng.integers(0, 10**9, n))
    c["ip_version"][:] = 4
    c["src"][:] = rng.integers(1 << 24, 0xDF000000, n, dtype=np.uint32)
    c["dst"][:] = 0xC6336400 + rng.integers(0, 256, n, dtype=np.uint32)  # 198.51.100.0/24
    c["protocol"][:] = rng.choice(np.array([6, 17], dtype=np.uint8), n, p=[0.9, 0.1])
    c["sport"][:] = rng.integers(1024, 65536, n, dtype=np.uint16)
    c["dport"][:] = rng.choice(np.array([23, 6379, 22, 80, 445], dtype=np.uint16), n)
    c["tcp_flags"][:] = np.where(c["protocol"] == 6, 2, 0)
    c["tcp_seq"][:] = rng.integers(0, 2**32, n, dtype=np.uint32)
    c["tcp_window"][:] = rng.integers(1024, 65536, n, dtype=np.uint16)
    c["ip_id"][:] = rng.integers(0, 65536, n, dtype=np.uint16)
    c["ttl"][:] = rng.integers(30, 250, n, dtype=np.uint8)
    c["length"][:] = np.where(c["protocol"] == 6, 40, 28)
    return b


def run_demo(
    broker: BrokerSettings,
    kafka: KafkaSettings,
    topics: TopicNames,
    packets: int,
    keep_broker: bool,
    echo: Callable[[str], None],
) -> None:
    """Start the broker if needed, publish packets as batches, read them back, report."""
    t0 = time.monotonic()
    status, started = broker_mod.start(broker)
    echo(
        f"broker {'started' if started else 'already running'} on {status.bootstrap} "
        f"({time.monotonic() - t0:.1f} s)"
    )
    kafka = KafkaSettings(
        bootstrap=status.bootstrap, partitions=kafka.partitions, replication=kafka.replication
    )
    try:
        for t in ensure_topics(kafka, topics.all()):
            echo(f"  topic {t.name}: {t.partitions} partitions")
        codec = Codec()
        rng = np.random.default_rng(7)
        before = watermarks(kafka.bootstrap, topics.packets)
        pub = Publisher(kafka.bootstrap)
        sent_src = 0
        t_start_ns = 1_648_771_200 * 10**9  # 2022-04-01T00:00:00Z
        for seq, start in enumerate(range(0, packets, 10_000)):
            batch = random_batch(
                rng, min(10_000, packets - start), "demo-sensor", seq, t_start_ns + seq * 10**9
            )
            pub.send(topics.packets, codec.encode_batch(batch), packets=len(batch))
            sent_src += int(batch["src"].sum())
        pub.flush()
        echo(
            f"published {pub.stats.packets_sent} packets in {pub.stats.messages_sent} "
            f"batches to {topics.packets} ({pub.stats.packets_failed} failed)"
        )
        after = watermarks(kafka.bootstrap, topics.packets)
        got = got_src = msgs = 0
        parts: set[int] = set()
        for msg in read_range(
            kafka.bootstrap,
            topics.packets,
            {p: hw for p, (_, hw) in before.items()},
            {p: hw for p, (_, hw) in after.items()},
        ):
            value = msg.value()
            assert value is not None
            back = codec.decode_packets(value)
            got += len(back)
            got_src += int(back["src"].sum())
            msgs += 1
            parts.add(msg.partition() or 0)
        ok = got == pub.stats.packets_sent and got_src == sent_src
        echo(
            f"consumed {got} packets in {msgs} batches from {len(parts)} partitions; "
            f"source-address checksum {'matches' if ok else 'DIFFERS'}"
        )
        echo(f"demo finished in {time.monotonic() - t0:.1f} s")
    finally:
        if started and not keep_broker:
            broker_mod.stop(broker)
            echo("broker stopped")
