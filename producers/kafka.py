"""Publish packet batches to Kafka with confluent-kafka: idempotent, acknowledged, back-pressured."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from darkscope.errors import BrokerError

__all__ = ["DeliveryStats", "Publisher"]

logger = logging.getLogger(__name__)


@dataclass
class DeliveryStats:
    """Counts of what Kafka acknowledged or refused."""

    messages_sent: int = 0
    messages_failed: int = 0
    packets_sent: int = 0
    packets_failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    sent_by_topic: dict[str, int] = field(default_factory=dict)  # messages acknowledged per topic


class Publisher:
    """A confluent-kafka producer with delivery reports counted per packet.

    Messages are not keyed, so the sticky partitioner spreads batches over every partition
    (DESIGN.md: one sensor must be able to feed many workers).
    """

    def __init__(self, bootstrap: str, extra: dict[str, Any] | None = None) -> None:
        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "compression.type": "lz4",
            "message.max.bytes": 8_000_000,
            "batch.size": 4_000_000,
            "queue.buffering.max.kbytes": 512 * 1024,
            "logger": logging.getLogger("darkscope.kafka.producer"),
        }
        conf.update(extra or {})
        self._producer = Producer(conf)
        self.stats = DeliveryStats()

    def _on_delivery(self, err: KafkaError | None, msg: Message, packets: int) -> None:
        if err is None:
            self.stats.messages_sent += 1
            self.stats.packets_sent += packets
            topic = str(msg.topic())
            self.stats.sent_by_topic[topic] = self.stats.sent_by_topic.get(topic, 0) + 1
        else:
            self.stats.messages_failed += 1
            self.stats.packets_failed += packets
            self.stats.errors[err.name()] = self.stats.errors.get(err.name(), 0) + 1
            logger.error("delivery to %s failed: %s", msg.topic(), err)

    def send(self, topic: str, value: bytes, packets: int = 1, key: bytes | None = None) -> None:
        """Queue one message; waits (polling delivery reports) while the local queue is full."""
        while True:
            try:
                self._producer.produce(
                    topic, value, key, on_delivery=lambda err, msg: self._on_delivery(err, msg, packets)
                )
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every queued message is acknowledged or failed."""
        remaining = self._producer.flush(timeout)
        if remaining:
            raise BrokerError(f"{remaining} messages still unacknowledged after {timeout:.0f} s")
