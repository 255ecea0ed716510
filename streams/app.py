"""The faust-streaming application: agents that only move bytes and call pure functions.

- ``enrich`` (source: darkscope.packets): decode a PacketBatch or PacketEvent frame, enrich it
  (:class:`streams.enrich.Enricher`), send the EnrichedBatch to darkscope.enriched and one
  PartialCounts per dimension kind to darkscope.counts keyed by the kind (the combiner).
- ``count`` (source: darkscope.counts): merge partial counts into event-time windows, close
  them by watermark, store closed windows in the ``window_counts`` table (an hour's minutes
  share one key: :mod:`streams.windowstore`) and raise alerts on darkscope.alerts: all of it
  in :class:`streams.counter.Counter`.
- a timer sends an empty PartialCounts per kind every few seconds so that windows close when
  the source partitions fall silent (end of a replay).

A worker that receives the first partial of a kind re-reads that kind's counts partition from
its replay point, so counting stays exact when a rebalance moves the partition
(:mod:`streams.takeover`).

Anything undecodable goes to darkscope.deadletter with topic, partition, offset and reason.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, cast

import faust

from darkscope.errors import CodecError, DarkscopeError
from darkscope.settings import KafkaSettings, TopicNames, WorkerSettings
from schemas.codec import Codec, dead_letter
from streams.counter import IDLE, Counter
from streams.counts import KINDS, Partial
from streams.enrich import Enricher, decode_partial
from streams.takeover import read_kind_async
from streams.windowstore import window_key

__all__ = ["WorkerState", "create_app", "window_key"]

IDLE_REFRESH_S = 30.0  # an idle packets partition is reported again this often

logger = logging.getLogger(__name__)


@dataclass
class WorkerState:
    """What one worker process holds between events."""

    settings: WorkerSettings
    kafka: KafkaSettings
    codec: Codec = field(default_factory=Codec)
    enricher: Enricher | None = None
    counter: Counter | None = None  # set by create_app (it needs the table)
    partition_wm: dict[int, int] = field(default_factory=dict)
    last_offset: dict[int, int] = field(default_factory=dict)  # packets partition -> offset done
    last_seen: dict[int, float] = field(default_factory=dict)  # packets partition -> monotonic time
    idle_sent: dict[int, float] = field(default_factory=dict)  # packets partition -> last idle marker
    started: float = field(default_factory=time.monotonic)
    packets: int = 0
    batches: int = 0
    dead: int = 0
    last_log: float = field(default_factory=time.monotonic)

    def get_enricher(self) -> Enricher:
        """The enricher, built on first use (opens the GeoIP databases)."""
        if self.enricher is None:
            from streams.fingerprints import SourceVerdicts
            from streams.geo import GeoResolver, default_city_db
            from streams.services import ServiceRegistry

            s = self.settings
            geo = GeoResolver(s.city_db or default_city_db(), s.asn_db, s.geo_cache_size)
            self.enricher = Enricher(geo, ServiceRegistry.load(), SourceVerdicts(), self.codec)
            logger.info("enricher ready: geo %s, asn %s", geo.geo_db_version, geo.asn_db_version or "none")
        return self.enricher


def _reason(exc: Exception) -> str:
    from darkscope.errors import UnknownSchema

    return "unknown_schema" if isinstance(exc, UnknownSchema) else "undecodable"


def create_app(settings: WorkerSettings, kafka: KafkaSettings, topics: TopicNames) -> faust.App:
    """The Faust app with its agents, table and timer."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
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
        # The default fetch size (1 MiB) holds one or two packet batches.
        consumer_max_fetch_size=32 * 2**20,
        # No producer compression: aiokafka's lz4 (cramjam) cost ~40 % of a worker's time
        # (py-spy) for batches that cross loopback or a LAN.
        producer_max_request_size=8 * 2**20,
        # Closed windows go to the table's changelog one small message each; without a
        # linger every one became its own produce request (a replayed quarter closes
        # hundreds of thousands of windows).
        producer_linger=0.01,
        producer_max_batch_size=2**20,
        broker_commit_every=200,
        # Faust drops already-fetched messages when a stream buffer fills (faust-streaming
        # issue #88); partial counts are small and many, so give the buffers room.
        stream_buffer_maxsize=65536,
    )
    state = WorkerState(settings, kafka)
    # Partition moves: held back until partials are final, see streams.takeover.
    packets_topic = app.topic(topics.packets, key_type=bytes, value_type=bytes, partitions=kafka.partitions)
    enriched_topic = app.topic(topics.enriched, key_type=bytes, value_type=bytes, partitions=kafka.partitions)
    counts_topic = app.topic(topics.counts, key_type=bytes, value_type=bytes, partitions=kafka.partitions)
    alerts_topic = app.topic(topics.alerts, key_type=bytes, value_type=bytes, partitions=kafka.partitions)
    dead_topic = app.topic(topics.deadletter, key_type=bytes, value_type=bytes, partitions=kafka.partitions)
    table = app.Table(
        "window_counts",
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=kafka.partitions,
        extra_topic_configs={"max.message.bytes": "8388608"},
    )
    counter = state.counter = Counter(settings, kafka.partitions, table)

    async def send_dead(reason: str, exc: Exception, msg: Any) -> None:
        state.dead += 1
        logger.warning("dead letter from %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, exc)
        await dead_topic.send(
            value=dead_letter(
                state.codec,
                "worker",
                reason,
                str(exc),
                (msg.topic, msg.partition, msg.offset),
                bytes(msg.value or b""),
                msg.key,
            )
        )

    @app.agent(packets_topic, name="enrich")
    async def enrich(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            state.last_offset[msg.partition] = msg.offset
            state.last_seen[msg.partition] = time.monotonic()
            state.idle_sent.pop(msg.partition, None)
            try:
                batch = state.codec.decode_packets(event.value)
            except CodecError as exc:
                await send_dead(_reason(exc), exc, msg)
                continue
            enricher = state.get_enricher()
            try:
                e = enricher.enrich(batch, msg.topic, msg.partition, msg.offset)
                frame = enricher.encode(e)
                partials = enricher.partials(e)
            except DarkscopeError as exc:
                await send_dead("bad_record", exc, msg)
                continue
            if len(batch):
                wm = max(state.partition_wm.get(msg.partition, 0), int(batch["ts"].max()))
                state.partition_wm[msg.partition] = wm
            else:
                wm = state.partition_wm.get(msg.partition, 0)
            await enriched_topic.send(value=frame)
            for p in partials:
                await counts_topic.send(key=p.kind.encode(), value=enricher.encode_partial(p, e, wm))
            state.packets += len(batch)
            state.batches += 1
            now = time.monotonic()
            if now - state.last_log > 10:
                logger.info(
                    "enriched %d packets in %d batches (%d dead letters)",
                    state.packets,
                    state.batches,
                    state.dead,
                )
                state.last_log = now

    async def take_over(kind: str, msg: Any) -> None:
        """First partial of a kind here: rebuild its windows that are not final yet from the
        counts partition, from the replay point that the previous owner left in the table."""
        final_before, start = counter.replay_start(kind, msg.partition)
        frames = []
        if start < msg.offset:
            for offset, value in await read_kind_async(
                kafka.bootstrap, msg.topic, msg.partition, start, msg.offset, kind
            ):
                try:
                    frames.append((offset, decode_partial(state.codec, value)))
                except CodecError:
                    continue  # dead-lettered when it was first read
        counter.take_over(kind, msg.partition, final_before, start, frames)

    async def on_assigned(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        # A kind whose counts partition is not ours any more is re-read by its new owner, and
        # by this worker again from the replay point if it ever comes back.
        assigned = args[0] if args else kwargs.get("assigned", set())
        for kind in counter.keep_partitions({tp.partition for tp in assigned if tp.topic == topics.counts}):
            logger.info("counts of %s moved to another worker", kind)
        # Reading resumes at the committed offsets: what this worker read of a packets
        # partition before says nothing about where it stands now (see idle_markers).
        for held in (state.last_offset, state.last_seen, state.idle_sent):
            held.clear()

    app.on_partitions_assigned.connect(cast(Any, on_assigned))

    @app.agent(counts_topic, name="count")
    async def count(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            try:
                frame = decode_partial(state.codec, event.value)
            except CodecError as exc:
                await send_dead(_reason(exc), exc, msg)
                continue
            kind = frame.partial.kind
            if kind not in KINDS:
                await send_dead("bad_record", CodecError(f"unknown kind {kind!r}"), msg)
                continue
            if not counter.owns(kind):
                await take_over(kind, msg)
            result = counter.count(kind, frame, msg.offset)
            if result.repeat:
                logger.info(
                    "%s: skipped the partial of packet batch [%d]@%d again (counted before)",
                    kind,
                    frame.source_partition,
                    frame.source_offset,
                )
            if result.late:
                logger.warning(
                    "%s: %d packets from %s[%d]@%d arrived after their window was forgotten "
                    "(watermark state %s)",
                    kind,
                    result.late,
                    msg.topic,
                    msg.partition,
                    msg.offset,
                    counter.trackers[kind].state(),
                )
            for alert in result.alerts:
                logger.info("alert %s %s: %s", alert["kind"], alert["key"], alert["message"])
                await alerts_topic.send(
                    key=alert["key"].encode(), value=state.codec.encode("darkscope.Alert", alert)
                )

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def idle_markers() -> None:
        # A packets partition whose last message is processed (consumer lag zero) and that
        # has been silent for idle_after seconds is reported idle to every kind's windows,
        # so that windows close when the input ends: once when it falls silent, then every
        # IDLE_REFRESH_S seconds for a worker that takes a kind over (a marker per second
        # would fill the counts topic, and a takeover's re-read, with markers).
        tps = [tp for tp in app.consumer.assignment() if tp.topic == topics.packets]
        if not tps:
            return
        ends = await app.consumer.highwaters(*tps)
        now = time.monotonic()
        enricher = state.get_enricher()
        for tp in tps:
            p = tp.partition
            if p in state.last_offset:
                caught_up = state.last_offset[p] + 1 >= ends.get(tp, 0)
            else:  # nothing read here since it was assigned: where does reading stand?
                position = await app.consumer.position(tp)
                caught_up = ends.get(tp, 0) == 0 or (position is not None and position >= ends[tp])
            quiet = now - state.last_seen.get(p, state.started) >= settings.idle_after
            if not (caught_up and quiet):
                continue
            if now - state.idle_sent.get(p, -IDLE_REFRESH_S) < IDLE_REFRESH_S:
                continue
            state.idle_sent[p] = now
            for kind in KINDS:
                marker = enricher.encode_partial_raw(Partial(kind, [], *_empty_columns()), p, IDLE)
                await counts_topic.send(key=kind.encode(), value=marker)

    app.darkscope_state = state  # type: ignore[attr-defined]  # for tests and the bench
    return app


def _empty_columns() -> tuple[Any, ...]:
    import numpy as np

    i, u = np.zeros(0, np.int64), np.zeros(0, np.uint32)
    return i, u, u, i, u, np.zeros(0, np.uint64)
