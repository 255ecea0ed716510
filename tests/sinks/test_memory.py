"""The in-memory consumer keeps the promises the loop's tests rely on, as librdkafka does on a
real broker: a rebalance or close calls ``on_revoke`` while the partitions are still held, so
commits there go through; a new owner starts from the committed offsets."""

from __future__ import annotations

import pytest
from confluent_kafka import OFFSET_INVALID, KafkaException, TopicPartition

from tests.sinks.memory import ManualClock, MemoryCluster, MemoryConsumer

T = "t"


def _member(cluster: MemoryCluster, name: str, log: list[tuple[str, str, list[int]]]) -> MemoryConsumer:
    consumer = MemoryConsumer(cluster, "g", name, wait=ManualClock().advance)

    def on_revoke(c: MemoryConsumer, parts: list[TopicPartition]) -> None:
        # Still held while the callback runs: committing what is in hand goes through.
        c.commit(
            offsets=[TopicPartition(T, p.partition, 1, metadata="in hand") for p in parts], asynchronous=False
        )
        log.append(("revoke", name, [p.partition for p in parts]))

    consumer.subscribe(
        [T],
        on_assign=lambda _, parts: log.append(("assign", name, [p.partition for p in parts])),
        on_revoke=on_revoke,
    )
    return consumer


def test_a_joining_member_gets_its_range_after_the_holder_revoked_and_commits_in_revoke_go_through() -> None:
    cluster = MemoryCluster(partitions=4)
    cluster.produce_all(T, [b"x"] * 8)
    log: list[tuple[str, str, list[int]]] = []
    a = _member(cluster, "a", log)
    assert [m.partition() for m in a.consume(8, 0.1)] == [0, 1, 2, 3, 0, 1, 2, 3]
    b = _member(cluster, "b", log)
    assert b.consume(8, 0.1) == []  # a still holds partitions 2 and 3
    # a revokes everything, then reads 0-1 again from their committed offsets; b 2-3 likewise.
    assert [(m.partition(), m.offset()) for m in a.consume(8, 0.1)] == [(0, 1), (1, 1)]
    assert [(m.partition(), m.offset()) for m in b.consume(8, 0.1)] == [(2, 1), (3, 1)]
    assert log == [
        ("assign", "a", [0, 1, 2, 3]),
        ("revoke", "a", [0, 1, 2, 3]),
        ("assign", "a", [0, 1]),
        ("assign", "b", [2, 3]),
    ]
    assert cluster.committed("g", T) == {p: (1, "in hand") for p in range(4)}
    a.close()  # revokes 0-1 (committing them) and leaves: b gets everything
    assert log[-1] == ("revoke", "a", [0, 1])
    b.consume(8, 0.1)
    assert log[-1] == ("assign", "b", [0, 1, 2, 3])


def test_a_commit_of_a_partition_not_held_is_refused_and_committed_reads_metadata_back() -> None:
    cluster = MemoryCluster(partitions=2)
    consumer = MemoryConsumer(cluster, "g", wait=ManualClock().advance)
    consumer.subscribe([T])
    with pytest.raises(KafkaException):  # nothing is assigned before the first consume
        consumer.commit(offsets=[TopicPartition(T, 0, 0)], asynchronous=False)
    consumer.consume(1, 0.1)
    consumer.commit(offsets=[TopicPartition(T, 0, 5, metadata="darkscope-sink:5-9")], asynchronous=False)
    got = consumer.committed([TopicPartition(T, 0), TopicPartition(T, 1)])
    assert [(tp.offset, tp.metadata) for tp in got] == [(5, "darkscope-sink:5-9"), (OFFSET_INVALID, "")]
    consumer.refuse = {(T, 1)}
    with pytest.raises(KafkaException):
        consumer.commit(offsets=[TopicPartition(T, 1, 0)], asynchronous=False)
