"""Create and describe darkscope's Kafka topics through the AdminClient."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from core.errors import BrokerError
from core.kafka_security import client_config
from core.settings import KafkaSettings, TopicNames

__all__ = [
    "TopicInfo",
    "admin_client",
    "committed",
    "ensure_topics",
    "list_topics",
    "read_range",
    "watermarks",
]

logger = logging.getLogger(__name__)

# Columnar packet batches reach ~0.5 MB; allow up to 8 MiB per message on every topic.
TOPIC_CONFIG = {"max.message.bytes": "8388608"}
_LEADERSHIP_PENDING = (
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
)


@dataclass(frozen=True)
class TopicInfo:
    """A topic and its partition count."""

    name: str
    partitions: int


def admin_client(bootstrap: str) -> AdminClient:
    """An AdminClient for ``bootstrap`` (with its security) that logs through Python logging."""
    return AdminClient(client_config(bootstrap, {"logger": logging.getLogger("darkscope.kafka.admin")}))


def list_topics(bootstrap: str, timeout: float = 10.0) -> list[TopicInfo]:
    """Topics on the cluster (internal ones excluded), sorted by name."""
    try:
        md = admin_client(bootstrap).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    return sorted(
        (
            TopicInfo(str(t.topic), len(t.partitions))
            for t in md.topics.values()
            if not str(t.topic).startswith("__")
        ),
        key=lambda t: t.name,
    )


def ensure_topics(
    kafka: KafkaSettings,
    names: Iterable[str] | None = None,
    partitions: int | None = None,
    timeout: float = 30.0,
) -> list[TopicInfo]:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    wanted = list(names) if names is not None else TopicNames().all()
    n = partitions or kafka.partitions
    existing = {t.name: t for t in list_topics(kafka.bootstrap, timeout)}
    missing = [
        NewTopic(name, num_partitions=n, replication_factor=kafka.replication, config=TOPIC_CONFIG)
        for name in wanted
        if name not in existing
    ]
    if missing:
        admin = admin_client(kafka.bootstrap)  # keep a reference until the futures resolve
        futures = admin.create_topics(missing, operation_timeout=timeout)
        for name, fut in futures.items():
            try:
                fut.result(timeout)
                logger.info("created topic %s with %d partitions", name, n)
            except KafkaException as exc:
                if exc.args and exc.args[0].code() == 36:  # TOPIC_ALREADY_EXISTS: a race, fine
                    continue
                raise BrokerError(f"cannot create topic {name}: {exc}") from exc
    for name in wanted:
        if name in existing and existing[name].partitions != n:
            logger.warning(
                "topic %s has %d partitions, settings say %d (left as is)", name, existing[name].partitions, n
            )
    if missing:
        _wait_for_leaders(kafka.bootstrap, [t.topic for t in missing], timeout)
    current = {t.name: t for t in list_topics(kafka.bootstrap, timeout)}
    return [current[name] for name in wanted if name in current]


def _wait_for_leaders(bootstrap: str, names: list[str], timeout: float) -> None:
    """Block until every partition of ``names`` has a leader (new topics take a moment)."""
    import time

    admin = admin_client(bootstrap)
    deadline = time.monotonic() + timeout
    while True:
        md = admin.list_topics(timeout=timeout)
        ready = all(
            name in md.topics
            and md.topics[name].error is None
            and md.topics[name].partitions
            and all(p.leader >= 0 for p in md.topics[name].partitions.values())
            for name in names
        )
        if ready:
            return
        if time.monotonic() > deadline:
            raise BrokerError(f"topics {names} have partitions without a leader after {timeout:.0f} s")
        time.sleep(0.1)


def committed(bootstrap: str, group: str, topic: str, timeout: float = 10.0) -> list[Any]:
    """What consumer ``group`` committed on every partition of ``topic``: confluent-kafka
    TopicPartitions with the offset (negative when nothing is committed) and its metadata."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        client_config(
            bootstrap,
            {
                "group.id": group,
                "enable.auto.commit": False,
                "logger": logging.getLogger("darkscope.kafka.consumer"),
            },
        )
    )
    try:
        md = consumer.list_topics(topic, timeout=timeout)
        if topic not in md.topics or md.topics[topic].error is not None:
            raise BrokerError(f"topic {topic} does not exist on {bootstrap}")
        parts = [TopicPartition(topic, p) for p in sorted(md.topics[topic].partitions)]
        return list(consumer.committed(parts, timeout=timeout))
    finally:
        consumer.close()


def watermarks(bootstrap: str, topic: str, timeout: float = 10.0) -> dict[int, tuple[int, int]]:
    """Partition -> (low, high) offsets of a topic."""
    import time

    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        client_config(
            bootstrap,
            {
                "group.id": "darkscope-watermarks",
                "enable.auto.commit": False,
                "logger": logging.getLogger("darkscope.kafka.consumer"),
            },
        )
    )
    try:
        md = consumer.list_topics(topic, timeout=timeout)
        if topic not in md.topics or md.topics[topic].error is not None:
            raise BrokerError(f"topic {topic} does not exist on {bootstrap}")
        out = {}
        deadline = time.monotonic() + timeout
        for p in md.topics[topic].partitions:
            while True:
                try:
                    out[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
                    break
                except KafkaException as exc:
                    # A partition just created may not have taken up its leadership yet.
                    err = exc.args[0]
                    transient = err.retriable() or err.code() in _LEADERSHIP_PENDING
                    if not transient or time.monotonic() > deadline:
                        raise BrokerError(f"watermarks of {topic}[{p}]: {exc}") from exc
                    time.sleep(0.2)
        return out
    finally:
        consumer.close()


def read_range(
    bootstrap: str, topic: str, start: dict[int, int], end: dict[int, int], timeout: float = 60.0
) -> Iterator[Message]:
    """Yield the messages of ``topic`` between offsets ``start`` and ``end`` (per partition).

    Reads by assignment (no consumer group), so it never disturbs workers' committed offsets.
    """
    import time

    from confluent_kafka import Consumer, TopicPartition

    todo = {p: e for p, e in end.items() if e > start.get(p, 0)}
    if not todo:
        return
    consumer = Consumer(
        client_config(
            bootstrap,
            {
                "group.id": "darkscope-reader",
                "enable.auto.commit": False,
                "fetch.max.bytes": 64 * 2**20,
                "logger": logging.getLogger("darkscope.kafka.consumer"),
            },
        )
    )
    consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in todo])
    deadline = time.monotonic() + timeout
    try:
        while todo:
            if time.monotonic() > deadline:
                raise BrokerError(f"timed out reading {topic}: partitions {sorted(todo)} unfinished")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise BrokerError(f"reading {topic}: {msg.error()}")
            p, offset = msg.partition(), msg.offset()
            if p is None or offset is None or p not in todo:
                continue
            yield msg
            if offset + 1 >= todo[p]:
                del todo[p]
    finally:
        consumer.close()
