"""The faust-streaming application: agents that only move bytes and call pure functions.

- ``enrich`` (source: darkscope.packets): decode a PacketBatch or PacketEvent frame, enrich it
  (:class:`streams.enrich.Enricher`), send the EnrichedBatch to darkscope.enriched and one
  PartialCounts per dimension kind to darkscope.counts keyed by the kind (the combiner).
- ``count`` (source: darkscope.counts): merge partial counts into event-time windows
  (:class:`streams.counts.KindWindows`), close them by watermark, store closed windows in the
  ``window_counts`` table (an hour's minutes share one key: :mod:`streams.windowstore`),
  and raise alerts (:class:`streams.alerts.AlertDetector`) on
  darkscope.alerts.
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
from streams.alerts import AlertDetector, AlertThresholds
from streams.counts import KINDS, KindWindows, Partial, WatermarkTracker
from streams.enrich import Enricher, PartialFrame, decode_partial
from streams.takeover import (
    NEVER,
    ReplayPoint,
    Takeover,
    decode_replay_point,
    published_until,
    read_kind_async,
    replay_key,
)
from streams.windowstore import MinuteBundles, window_key

__all__ = ["WorkerState", "create_app", "window_key"]

logger = logging.getLogger(__name__)

IDLE = -1  # the watermark of a PartialCounts that marks its source partition idle


@dataclass
class WorkerState:
    """What one worker process holds between events."""

    settings: WorkerSettings
    kafka: KafkaSettings
    codec: Codec = field(default_factory=Codec)
    enricher: Enricher | None = None
    windows: dict[str, KindWindows] = field(default_factory=dict)
    trackers: dict[str, WatermarkTracker] = field(default_factory=dict)
    detector: AlertDetector | None = None
    minute_bundles: MinuteBundles = field(default_factory=MinuteBundles)
    replay_points: dict[str, ReplayPoint] = field(default_factory=dict)
    published: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> size -> start
    takeovers: list[Takeover] = field(default_factory=list)
    partition_wm: dict[int, int] = field(default_factory=dict)
    last_offset: dict[int, int] = field(default_factory=dict)  # packets partition -> offset done
    last_seen: dict[int, float] = field(default_factory=dict)  # packets partition -> monotonic time
    started: float = field(default_factory=time.monotonic)
    packets: int = 0
    batches: int = 0
    dead: int = 0
    repeats: int = 0  # partials of packet batches enriched twice, skipped
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

    def windows_of(self, kind: str) -> tuple[KindWindows, WatermarkTracker]:
        """Windows and watermark tracker of one dimension kind."""
        if kind not in self.windows:
            self.windows[kind] = KindWindows(kind, self.settings.retention)
            self.trackers[kind] = WatermarkTracker(self.kafka.partitions, self.settings.lateness)
        return self.windows[kind], self.trackers[kind]

    def drop_kind(self, kind: str) -> None:
        """Forget a kind whose counts partition went to another worker (it re-reads them)."""
        for held in (self.windows, self.trackers, self.replay_points, self.published):
            held.pop(kind, None)
        self.minute_bundles.drop(kind)

    def get_detector(self) -> AlertDetector:
        """The alert detector with the thresholds of the settings."""
        if self.detector is None:
            s = self.settings
            self.detector = AlertDetector(
                AlertThresholds(
                    window=s.alert_window,
                    baseline_windows=s.alert_baseline_windows,
                    min_history=s.alert_min_history,
                    z_score=s.alert_z_score,
                    min_ratio=s.alert_min_ratio,
                    min_packets=s.alert_min_packets,
                    min_sources=s.alert_min_sources,
                    cooldown_windows=s.alert_cooldown_windows,
                )
            )
        return self.detector


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
    state.minute_bundles = MinuteBundles(table.get)

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

    def merge(kind: str, frame: PartialFrame, offset: int) -> int:
        """Fold one partial into its kind's windows and watermark; the late packets it had.

        A packet batch enriched twice (its partition moved, or a worker stopped, before the
        offset was committed: Kafka delivers at least once) sends its partials twice; packets
        partitions are read in order, so a partial at or before the newest offset merged from
        its partition is such a repeat, and is skipped."""
        windows, tracker = state.windows_of(kind)
        point = state.replay_points[kind]
        if frame.watermark == IDLE:
            tracker.set_idle(frame.source_partition)
            point.record(offset, None)
            return 0
        if not point.first_time(frame.source_partition, frame.source_offset):
            state.repeats += 1
            logger.info(
                "%s: skipped the partial of packet batch [%d]@%d again (counted before)",
                kind,
                frame.source_partition,
                frame.source_offset,
            )
            point.record(offset, None)
            return 0
        late_before = windows.late_packets
        partial = frame.partial
        windows.add(partial)
        tracker.update(frame.source_partition, frame.watermark)
        point.record(offset, int(partial.minute.max()) if len(partial.minute) else None)
        return windows.late_packets - late_before

    async def take_over(kind: str, msg: Any) -> None:
        """First partial of a kind here: rebuild its windows that are not final yet from the
        counts partition, from the replay point that the previous owner left in the table."""
        final_before, start = decode_replay_point(table.get(replay_key(kind)), msg.partition)
        prefix = f"{kind}|".encode()
        published = published_until([k for k in table if k.startswith(prefix)], table, kind)
        windows, _ = state.windows_of(kind)
        windows.final_before = final_before
        state.published[kind] = published
        state.replay_points[kind] = ReplayPoint(msg.partition, final_before)
        replayed = 0
        if start < msg.offset:
            for offset, value in await read_kind_async(
                kafka.bootstrap, msg.topic, msg.partition, start, msg.offset, kind
            ):
                try:
                    frame = decode_partial(state.codec, value)
                except CodecError:
                    continue  # dead-lettered when it was first read
                merge(kind, frame, offset)
                replayed += 1
        took = Takeover(kind, msg.partition, final_before, start, replayed, state.published[kind])
        state.takeovers.append(took)
        if replayed or final_before != NEVER:
            logger.info(
                "took over %s on %s[%d]: re-read %d partials from offset %d (final before %d, "
                "%d packets already counted), published up to %s",
                kind,
                msg.topic,
                msg.partition,
                replayed,
                start,
                final_before,
                windows.skipped_final,
                took.published,
            )

    async def drop_moved_kinds(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        # A kind whose counts partition is not ours any more is re-read by its new owner, and
        # by this worker again from the replay point if it ever comes back.
        assigned = args[0] if args else kwargs.get("assigned", set())
        mine = {tp.partition for tp in assigned if tp.topic == topics.counts}
        for kind in [k for k, point in state.replay_points.items() if point.partition not in mine]:
            logger.info("counts of %s moved to another worker", kind)
            state.drop_kind(kind)

    app.on_partitions_assigned.connect(cast(Any, drop_moved_kinds))

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
            if kind not in state.replay_points:
                await take_over(kind, msg)
            windows, tracker = state.windows_of(kind)
            late = merge(kind, frame, msg.offset)
            if late:
                logger.warning(
                    "%s: %d packets from %s[%d]@%d arrived after their window was forgotten "
                    "(watermark state %s)",
                    kind,
                    late,
                    msg.topic,
                    msg.partition,
                    msg.offset,
                    tracker.state(),
                )
            watermark = tracker.current_s()
            if frame.watermark == IDLE and logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "count %s: watermark %s, %s, open minutes %d",
                    kind,
                    watermark,
                    tracker.state(),
                    len(windows.open_minutes()),
                )
            if watermark is None:
                continue
            closed_now = windows.close_until(watermark)
            for key, value in state.minute_bundles.writes(closed_now):
                table[key] = value
            state.minute_bundles.forget(kind, windows.horizon)
            point = state.replay_points[kind].advance(windows.horizon)
            if point is not None:
                table[replay_key(kind)] = point
            published = state.published[kind]
            for closed in closed_now:
                if closed.revision:
                    continue  # a late correction: the table holds it, alerts were decided
                raised = state.get_detector().observe(closed)
                if closed.start <= published[closed.size]:
                    continue  # closed again after a takeover: its alerts went out before
                for alert in raised:
                    logger.info("alert %s %s: %s", alert["kind"], alert["key"], alert["message"])
                    await alerts_topic.send(
                        key=alert["key"].encode(), value=state.codec.encode("darkscope.Alert", alert)
                    )

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def idle_markers() -> None:
        # A packets partition whose last message is processed (consumer lag zero) and that
        # has been silent for idle_after seconds is reported idle to every kind's windows,
        # so that windows close when the input ends.
        tps = [tp for tp in app.consumer.assignment() if tp.topic == topics.packets]
        if not tps:
            return
        ends = await app.consumer.highwaters(*tps)
        now = time.monotonic()
        enricher = state.get_enricher()
        for tp in tps:
            p = tp.partition
            caught_up = state.last_offset.get(p, -1) + 1 >= ends.get(tp, 0)
            quiet = now - state.last_seen.get(p, state.started) >= settings.idle_after
            if caught_up and quiet:
                for kind in KINDS:
                    marker = enricher.encode_partial_raw(Partial(kind, [], *_empty_columns()), p, IDLE)
                    await counts_topic.send(key=kind.encode(), value=marker)

    app.darkscope_state = state  # type: ignore[attr-defined]  # for tests and the bench
    return app


def _empty_columns() -> tuple[Any, ...]:
    import numpy as np

    i, u = np.zeros(0, np.int64), np.zeros(0, np.uint32)
    return i, u, u, i, u, np.zeros(0, np.uint64)
