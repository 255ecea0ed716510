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

The consumer also commits an offset only when every message before it was processed
(:class:`_Consumer`): Faust's own check lets one unprocessed message at the committed offset
through, which lost a packet batch to a rebalance followed by a SIGTERM.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from core.kafka_security import ssl_context
from core.settings import KafkaSettings, WorkerSettings
from streams.watch import Held

__all__ = ["FETCH_MAX_WAIT_MS", "App", "broker_credentials", "faust_app"]

logger = logging.getLogger(__name__)

FETCH_MAX_WAIT_MS = 50


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts its fetcher
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    """Faust's consumer, with a commit that never passes a message that was not processed.

    Kafka's committed offset is the next offset to read. Faust's ``_new_offset`` commits the
    first run of acked offsets unless it starts *more than one* past the committed offset
    (``min(acked) - committed > 1``), and skips the check when nothing was committed yet or
    the committed offset is 0: one message at the committed offset that was delivered to no
    stream (a rebalance in the middle of a fetch) was committed all the same, and its packet
    batch was never enriched (seen in bench/rebalance_soak.py: "enriched 74 of 75 batches,
    missing (2, 10)" after a worker joined and the first one stopped). Here the run must start
    at the committed offset (or at the partition's first offset when none is committed, or
    when retention deleted the committed one); otherwise the commit waits (:attr:`held`) until
    the worker seeks back to it (:mod:`streams.watch`) or a rebalance reads the partition again
    from the committed offset.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._log_start: dict[TP, int] = {}
        self.held: dict[TP, Held] = {}

    def _new_consumer_thread(self) -> Any:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        """Seek to the committed offsets, and learn where each assigned partition starts."""
        await super().perform_seek()
        tps = sorted(self.assignment())
        if not tps:
            return
        starts = {tp: int(o) for tp, o in (await self.earliest_offsets(*tps)).items() if o is not None}
        self._log_start.update(starts)
        for tp, start in starts.items():
            committed = self._committed_offset[tp]
            if committed is not None and committed < start:  # retention deleted what followed it
                self._committed_offset[tp] = start

    def processed(self, tp: TP, offset: int) -> None:
        """Count ``offset`` as acked: an agent read and processed it past Faust, which never
        delivered it (:class:`streams.watch.Gaps`)."""
        committed = self._committed_offset[tp]
        index = self._acked_index[tp]
        if (committed is None or offset >= committed) and offset not in index:
            index.add(offset)
            self._acked[tp].append(offset)

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        if acked:
            committed = self._committed_offset[tp]
            head = committed if committed is not None else self._log_start.get(tp)
            first = min(acked)
            if head is not None and first > head:
                held = self.held.get(tp)
                if held is None or held.offset != head:
                    self.held[tp] = Held(head, time.monotonic())
                    logger.warning(
                        "%s[%d]: commit held at offset %d: offset %d and later were processed, "
                        "%d was not (it is read again)",
                        tp.topic,
                        tp.partition,
                        head,
                        first,
                        head,
                    )
                return None
        self.held.pop(tp, None)
        offset: int | None = super()._new_offset(tp)
        return offset


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class App(faust.App):
    """A Faust app whose consumer fetches with a short broker-side wait."""

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)


def broker_credentials(kafka: KafkaSettings) -> faust.auth.Credentials | None:
    """Faust's (aiokafka's) side of ``DARKSCOPE_SECURITY_PROTOCOL``: TLS, SASL or both."""
    context = ssl_context(kafka)
    if kafka.security_protocol.startswith("SASL_"):
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        return faust.auth.SASLCredentials(
            username=kafka.sasl_username,
            password=password,
            ssl_context=context,
            mechanism=kafka.sasl_mechanism,
        )
    return None if context is None else faust.auth.SSLCredentials(context)


def faust_app(settings: WorkerSettings, kafka: KafkaSettings) -> faust.App:
    """The Faust app and the settings that mattered (measured; see the comments)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return App(
        settings.app_id,
        broker=f"kafka://{kafka.bootstrap}",
        broker_credentials=broker_credentials(kafka),
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
        # Offsets are committed by Faust's timer (broker_commit_interval, 2.8 s), never from
        # inside its fetch loop: a commit made there (every N acks) holds a fetched message
        # while it waits for the consumer thread, which a rebalance keeps busy; the message,
        # delivered after the rebalance's seek, moved the read offset past the re-fetched
        # messages before it, which Faust then dropped (seen: commits held at offset X while
        # X+1 and later were processed, on every counts partition after a takeover; a window
        # message lost with them made a day 131 packets short).
        broker_commit_every=2**62,
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
