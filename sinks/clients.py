"""What the sink's loop calls on its consumer, its dead-letter publisher and its store.

The loop (:mod:`sinks.loop`) owns the exactly-once logic but not its clients: they are passed
in, typed by these Protocols, so that the same loop runs on confluent-kafka and a ClickHouse
store in production (:class:`sinks.sink.Sink` builds them) and on in-memory fakes in tests,
without a broker. Each Protocol is the subset of the real client the loop uses, with the real
client's signature, so that mypy checks the real ``confluent_kafka.Consumer``,
:class:`core.publisher.Publisher` and :class:`sinks.store.Store` against them.

Messages, topic partitions and Kafka errors stay confluent-kafka's own value types: they are
plain data (a fake builds them with their constructors), and the loop reads them as it always has.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

from confluent_kafka import Message, TopicPartition

from schemas.codec import Codec

__all__ = ["DeadLetterPublisher", "RebalanceCallback", "SinkConsumer", "SinkStore"]

# (the consumer, its partitions): called from inside ``consume`` when a rebalance assigns or
# revokes partitions; a revoked partition is still the consumer's while the callback runs.
RebalanceCallback = Callable[[Any, list[TopicPartition]], None]


class SinkConsumer(Protocol):
    """A Kafka consumer in a consumer group, with automatic commits off."""

    def subscribe(
        self,
        topics: list[str],
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
    ) -> None:
        """Join the group for ``topics``; rebalances call back from inside :meth:`consume`."""

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        """Up to ``num_messages`` messages, waiting at most ``timeout`` seconds for the first."""
        ...

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        """The group's committed offsets (and their metadata) of ``partitions``."""
        ...

    def commit(self, *, offsets: list[TopicPartition], asynchronous: Literal[False]) -> list[TopicPartition]:
        """Commit ``offsets`` (with metadata) synchronously; raises KafkaException when refused."""
        ...

    def close(self) -> None:
        """Leave the group (revoking what is assigned) and release the client."""


class DeadLetterPublisher(Protocol):
    """Where dead letters go: a producer that is flushed before the offsets are committed."""

    def send(self, topic: str, value: bytes, packets: int = 1, key: bytes | None = None) -> None:
        """Queue one message."""

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every queued message is acknowledged (BrokerError otherwise)."""


class SinkStore(Protocol):
    """The ClickHouse store the sink inserts into (StoreUnavailable while it cannot)."""

    codec: Codec

    def insert_native(
        self, table: str, columns: Sequence[str], block: bytes, dedup_token: str | None = None
    ) -> None:
        """Insert one Native block; a block whose ``dedup_token`` the table has seen is dropped."""

    def insert_sensor_health(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Insert SensorHealth records as decoded; a record inserted twice collapses."""
        ...
