"""The worker's Faust app: its settings (:func:`faust_app`, each one measured), and Faust's
Kafka transport with the one consumer setting Faust does not expose: how long a fetch waits at
the broker for data.

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

from core.settings import KafkaSettings, WorkerSettings

__all__ = ["FETCH_MAX_WAIT_MS", "App", "faust_app"]

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


def faust_app(settings: WorkerSettings, kafka: KafkaSettings) -> faust.App:
    """The Faust app and the settings that mattered (measured; see the comments)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return App(
        settings.app_id,
        broker=f"kafka://{kafka.bootstrap}",
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication,
        datadir=str(settings.data_dir),
        web_enabled=settings.web_port > 0,
        web_port=settings.web_port or 6066,
        consumer_auto_offset_reset="earliest",
        # How soon a dead worker's partitions move (its open windows are rebuilt from the
        # replay points, streams.takeover); heartbeats at a third of it.
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=settings.session_timeout / 3,
        # Per partition and fetch. The default (1 MiB) holds one or two packet batches; at
        # 32 MiB the first fetch of a backlog (50 MiB in all) took whole partitions and left
        # others unread, so the watermark over them could not move until the end. 4 MiB
        # reads eight partitions evenly.
        consumer_max_fetch_size=4 * 2**20,
        # No producer compression: aiokafka's lz4 (cramjam) cost ~40 % of a worker's time
        # (py-spy) for batches that cross loopback or a LAN.
        producer_max_request_size=8 * 2**20,
        # Partials, windows and table writes are small messages; without a linger every one
        # became its own produce request.
        producer_linger=0.01,
        producer_max_batch_size=2**20,
        broker_commit_every=200,
        # Faust drops already-fetched messages when a stream buffer fills (faust-streaming
        # issue #88); partial counts are small and many, so give the buffers room.
        stream_buffer_maxsize=65536,
        # No standby copies of the table. A standby partition that Faust promotes to active
        # is read from offset -1 while the consumer already stands at its end, so recovery
        # waited for events that never came ("No event received for active tp ... since
        # recovery start", a worker stalled for minutes in bench/rebalance_soak.py). Without
        # standbys a new owner reads the (compacted) changelog partition from its start.
        table_standby_replicas=0,
    )
