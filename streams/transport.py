"""Faust's Kafka transport with the one consumer setting Faust does not expose: how long a
fetch waits at the broker for data.

Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500`` and no setting to change
it. aiokafka keeps one fetch in flight per broker, for every partition that has nothing
buffered, so a fetch sent while the counts partitions are empty is parked at the broker and
the partials the enrich agent sends meanwhile wait for it: measured in one worker
(``bench/streams.py``), a partial was counted 1.4 to 1.9 s after it was sent. At 50 ms it is
0.5 to 0.6 s, and a worker that keeps counting in step with enrichment (the enrich agent
waits for it, :class:`streams.progress.CountBacklog`) runs twice as fast. The cost is more
fetch requests when a worker is idle (20 a second instead of one every 1.5 s).
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

__all__ = ["FETCH_MAX_WAIT_MS", "App"]

FETCH_MAX_WAIT_MS = 50


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts its fetcher
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> Any:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class App(faust.App):
    """A Faust app whose consumer fetches with a short broker-side wait."""

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
