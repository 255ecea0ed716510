"""The sink agent: :class:`sinks.loop.SinkLoop` on real clients, a confluent-kafka consumer in
the sink's group and a :class:`core.publisher.Publisher` for dead letters.

The exactly-once logic lives in :mod:`sinks.loop` and :mod:`sinks.intents`, which take their
clients as parameters and are tested without a broker; this module only builds the clients the
``darkscope sink`` process (and the benchmark) run with, so that the consumer settings below,
and why each is set, are in one place.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import Consumer

from core.kafka_security import client_config
from core.publisher import Publisher
from core.settings import KafkaSettings, SinkSettings, TopicNames
from sinks.clients import SinkConsumer, SinkStore
from sinks.loop import SinkLoop

__all__ = ["Sink", "sink_consumer"]


def sink_consumer(settings: SinkSettings, kafka: KafkaSettings) -> SinkConsumer:
    """A consumer in the sink's group: commits only what the loop commits, from the earliest offset."""
    return Consumer(
        client_config(
            kafka.bootstrap,
            {
                "group.id": settings.group_id,
                # The loop commits an intent before each insert and the offset after it, never more.
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                # A sink that dies hands its partitions over after 10 s, not librdkafka's 45 s.
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 2_000,
                "max.partition.fetch.bytes": 16 * 2**20,
                "fetch.max.bytes": 64 * 2**20,
                "logger": logging.getLogger("darkscope.kafka.sink"),
            },
        )
    )


class Sink(SinkLoop):
    """Consumes darkscope.enriched and darkscope.sensors from Kafka into a store."""

    def __init__(
        self,
        store: SinkStore,
        settings: SinkSettings,
        kafka: KafkaSettings,
        topics: TopicNames,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """A sink writing to ``store``; call :meth:`run`."""
        dead = Publisher(kafka.bootstrap)
        super().__init__(store, settings, topics, sink_consumer(settings, kafka), dead, clock, sleep)
