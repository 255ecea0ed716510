"""Batches and events through the real broker: produced with confluent-kafka, read back decoded."""

from __future__ import annotations

import numpy as np
import pytest
from confluent_kafka import Consumer

from core.publisher import Publisher
from core.settings import KafkaSettings
from core.topics import ensure_topics, list_topics, read_range, watermarks
from schemas.batch import PacketBatch
from schemas.codec import Codec

pytestmark = pytest.mark.broker

CODEC = Codec()


def random_batch(rng: np.random.Generator, n: int, sensor_id: str, batch_seq: int, t0_ns: int) -> PacketBatch:
    """A batch of ``n`` plausible random IPv4 TCP/UDP packets."""
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


def _publish(bootstrap: str, topic: str, frames: list[tuple[bytes, int]]) -> Publisher:
    pub = Publisher(bootstrap)
    for value, packets in frames:
        pub.send(topic, value, packets=packets)
    pub.flush()
    return pub


def test_batches_come_back_decoded_with_every_packet(kafka_bootstrap: str, topic: str) -> None:
    rng = np.random.default_rng(11)
    batches = [random_batch(rng, 5_000, "sensor-a", seq, seq * 10**9) for seq in range(12)]
    pub = _publish(kafka_bootstrap, topic, [(CODEC.encode_batch(b), len(b)) for b in batches])
    assert pub.stats.packets_sent == 60_000 and pub.stats.packets_failed == 0

    marks = watermarks(kafka_bootstrap, topic)
    assert sum(hi for _, hi in marks.values()) == 12
    got: dict[int, PacketBatch] = {}
    per_partition: dict[int, int] = {}
    where: dict[int, int] = {}  # batch seq -> partition
    for msg in read_range(
        kafka_bootstrap,
        topic,
        {p: lo for p, (lo, _) in marks.items()},
        {p: hi for p, (_, hi) in marks.items()},
    ):
        value = msg.value()
        assert value is not None
        batch = CODEC.decode_packets(value)
        got[batch.batch_seq] = batch
        per_partition[msg.partition()] = per_partition.get(msg.partition(), 0) + 1
        where[batch.batch_seq] = msg.partition()
    assert sorted(got) == list(range(12))
    for original in batches:
        back = got[original.batch_seq]
        for name in ("ts", "src", "dst", "dport", "tcp_seq", "ttl"):
            np.testing.assert_array_equal(back[name], original[name])
    # Unkeyed batches go to the partitions in turn: an even share each, so a backlog is spread
    # over every worker and every partition covers the same stretch of event time.
    assert per_partition == {0: 3, 1: 3, 2: 3, 3: 3}
    assert [(where[seq + 1] - where[seq]) % 4 for seq in range(11)] == [1] * 11


def test_per_packet_events_are_accepted_on_the_same_topic(kafka_bootstrap: str, topic: str) -> None:
    batch = random_batch(np.random.default_rng(3), 50, "third-party", 0, 0)
    frames = [(f, 1) for f in CODEC.encode_events(batch)] + [(CODEC.encode_batch(batch), 50)]
    _publish(kafka_bootstrap, topic, frames)
    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    packets = 0
    sources: list[int] = []
    try:
        while packets < 100:
            msg = consumer.poll(10.0)
            assert msg is not None, "timed out waiting for messages"
            assert msg.error() is None
            value = msg.value()
            assert value is not None
            decoded = CODEC.decode_packets(value)
            packets += len(decoded)
            sources.extend(int(s) for s in decoded["src"])
    finally:
        consumer.close()
    assert packets == 100
    assert sorted(sources) == sorted([int(s) for s in batch["src"]] * 2)


def test_topics_are_created_once_with_the_configured_partitions(kafka_bootstrap: str) -> None:
    import uuid

    names = [f"test.create.{uuid.uuid4().hex[:6]}.{i}" for i in range(2)]
    kafka = KafkaSettings(bootstrap=kafka_bootstrap, partitions=3)
    first = ensure_topics(kafka, names)
    again = ensure_topics(kafka, names, partitions=5)  # existing topics are left alone
    assert [(t.name, t.partitions) for t in first] == [(n, 3) for n in names]
    assert [(t.name, t.partitions) for t in again] == [(n, 3) for n in names]
    assert set(names) <= {t.name for t in list_topics(kafka_bootstrap)}


@pytest.mark.parametrize("garbage", [b"", b"hello", b"\xc3\x01" + b"\xff" * 8 + b"x"])
def test_garbage_on_the_topic_is_a_codec_error_not_a_crash(
    kafka_bootstrap: str, topic: str, garbage: bytes
) -> None:
    from core.errors import CodecError

    _publish(kafka_bootstrap, topic, [(garbage, 1)])
    marks = watermarks(kafka_bootstrap, topic)
    msgs = list(
        read_range(kafka_bootstrap, topic, {p: 0 for p in marks}, {p: hi for p, (_, hi) in marks.items()})
    )
    assert len(msgs) == 1
    with pytest.raises(CodecError):
        CODEC.decode_packets(msgs[0].value() or b"")
