"""The faust-streaming application: agents that only move bytes and call pure functions.

- ``enrich`` (source: darkscope.packets): decode a PacketBatch or PacketEvent frame, enrich it
  (:class:`streams.enrich.Enricher`), send the EnrichedBatch to darkscope.enriched and one
  PartialCounts to every counts partition, holding the rows of the addresses routed to it
  (:mod:`streams.combiner`).
- ``count`` (source: darkscope.counts): each counts partition's windows over its addresses
  (:class:`streams.shard.ShardCounter`); closed windows go to darkscope.windows keyed by kind.
- ``merge`` (source: darkscope.windows): a kind's windows added up over the counts partitions
  (:class:`streams.merge.WindowMerger`), written to the ``window_counts`` table, and the alerts
  they raise sent to darkscope.alerts.
- a timer sends an idle marker to every counts partition for each packets partition that fell
  silent (:class:`streams.progress.PacketsProgress`), so that windows close when a replay ends.
- a timer ends two stalls of Faust's consumer (a table recovery that receives nothing, a
  message that reached no stream): :mod:`streams.watch`.

A worker that receives the first message of a counts partition or of a kind's windows re-reads
that partition from its replay point, so counting stays exact when a rebalance moves it
(:mod:`streams.takeover`).

Anything undecodable goes to darkscope.deadletter with topic, partition, offset and reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar, cast

import faust

from core.errors import CodecError, DarkscopeError, SchemaMismatch
from core.settings import KafkaSettings, TopicNames, WorkerSettings
from schemas.codec import Codec, dead_letter
from schemas.names import ALERT
from schemas.partials import decode_frame, encode_frame, idle_marker
from schemas.windowcounts import decode_window_counts, window_counts_frames
from streams.faustapp import faust_app
from streams.merge import WindowMerger
from streams.progress import PacketsProgress
from streams.shard import ShardCounter, ShardResult, shard_replay_key
from streams.state import WorkerState, detector_of
from streams.takeover import decode_replay_point, read_partition_async, replay_key, replay_messages
from streams.watch import Held, Missed, held_too_long, stalled_recovery
from streams.windowstore import window_key

__all__ = ["create_app", "window_key"]

IDLE_REFRESH_S = 30.0  # an idle packets partition is reported again this often
CLOSE_EVERY_S = 1.0  # a counts partition closes windows at most this often (and when idle)
PACE_WAIT_S = 1.0  # the longest the enrich agent waits for counting after each batch
HAND_OVER_TIMEOUT_S = 30.0  # a stopping worker waits this long to hand a batch over
BLIND_AFTER_S = 5.0  # the idle check not done for this long: the broker was out of sight
WATCH_EVERY_S = 5.0  # how often the worker looks for a stalled recovery or a held commit

logger = logging.getLogger(__name__)

T = TypeVar("T")


def create_app(settings: WorkerSettings, kafka: KafkaSettings, topics: TopicNames) -> faust.App:
    """The Faust app with its agents, table and timers."""
    app = faust_app(settings, kafka)
    parts = kafka.partitions
    state = WorkerState(settings, kafka, progress=PacketsProgress(settings.idle_after, IDLE_REFRESH_S))
    progress = cast(PacketsProgress, state.progress)
    detector = state.detector = detector_of(settings)

    def topic(name: str) -> Any:
        return app.topic(name, key_type=bytes, value_type=bytes, partitions=parts)

    packets_topic, enriched_topic = topic(topics.packets), topic(topics.enriched)
    counts_topic, windows_topic = topic(topics.counts), topic(topics.windows)
    alerts_topic, dead_topic = topic(topics.alerts), topic(topics.deadletter)
    table = app.Table(
        "window_counts",
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=parts,
        extra_topic_configs={"max.message.bytes": "8388608"},
    )

    async def send_dead(reason: str, exc: Exception, msg: Any) -> None:
        state.dead += 1
        logger.warning("dead letter from %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, exc)
        dead_topic.send_soon(
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

    async def decoded(decode: Callable[[Codec, bytes], T], msg: Any) -> T | None:
        """A message's value decoded, or None when it is dead-lettered instead."""
        try:
            return decode(state.codec, msg.value)
        except CodecError as exc:
            await send_dead(exc.reason, exc, msg)
            return None

    async def missed_before(msg: Any, start_if_new: int | None = None) -> list[Missed]:
        """The messages of ``msg``'s partition between the last one this agent processed (or
        ``start_if_new``) and ``msg`` that Faust never delivered, read from the broker directly
        (:class:`streams.watch.Gaps`)."""
        gap = state.gaps.missing(msg.topic, msg.partition, msg.offset, start_if_new)
        if not gap:
            return []
        values = await read_partition_async(kafka.bootstrap, msg.topic, msg.partition, gap.start, gap.stop)
        logger.warning(
            "%s[%d]: offsets %d to %d reached no stream here: read from the broker (%d messages)",
            msg.topic,
            msg.partition,
            gap.start,
            gap.stop - 1,
            len(values),
        )
        return [Missed(msg.topic, msg.partition, offset, value, msg.tp) for offset, value in values]

    def processed(msg: Any) -> None:
        """``msg`` is done: the next offset expected, and a message read past Faust acked in its
        stead (so that its offset can be committed)."""
        state.gaps.done(msg.topic, msg.partition, msg.offset)
        if isinstance(msg, Missed):
            mark = getattr(app.consumer, "processed", None)
            if mark is not None:
                mark(msg.tp, msg.offset)

    def committed_start(tp: Any) -> int | None:
        """Where the consumer started reading ``tp`` at its assignment (the committed offset, or
        the partition's first offset when none is committed)."""
        consumer = app.consumer
        start: int | None = getattr(consumer, "_committed_offset", {}).get(tp)
        if start is None:
            start = getattr(consumer, "_log_start", {}).get(tp)
        return start

    async def hand_over(sends: list[Any]) -> None:
        """Hand a batch's messages to the Kafka client together. Shielded, and finished even
        when the agent is stopped meanwhile: Faust acks the event in hand when an agent stops,
        so a stop must not leave part of its messages unsent (each send awaited in turn lost
        a batch's partials to a SIGTERM)."""
        task = asyncio.ensure_future(asyncio.gather(*sends))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            await asyncio.wait([task], timeout=HAND_OVER_TIMEOUT_S)
            raise

    async def pace() -> None:
        """Wait while this worker's counting is too far behind its enrichment (bounded: a
        rebalance in flight must not hold enrichment up)."""
        deadline = time.monotonic() + PACE_WAIT_S
        while state.backlog.too_far():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            state.counted.clear()
            try:
                await asyncio.wait_for(state.counted.wait(), left)
            except TimeoutError:
                return

    async def enrich_one(msg: Any) -> None:
        """Enrich one packet batch and hand its messages over."""
        try:
            batch = state.codec.decode_packets(msg.value)
        except CodecError as exc:
            progress.batch(msg.partition, msg.offset, None)
            await send_dead(exc.reason, exc, msg)
            return
        enricher = state.get_enricher()
        wm = progress.batch(msg.partition, msg.offset, int(batch["ts"].max()) if len(batch) else None)
        try:
            e = enricher.enrich(batch, msg.topic, msg.partition, msg.offset)
            frame = enricher.encode(e)
            frames = [encode_frame(state.codec, f, msg.topic) for f in enricher.frames(e, parts, wm)]
        except DarkscopeError as exc:
            await send_dead(exc.reason, exc, msg)
            return
        # Every message handed to the Kafka client before the event is acked (the next
        # event acks it): the flush before an offset commit then covers them all. Through
        # Faust's buffer instead (send_soon), a message taken out of the buffer but not yet
        # in the client escaped the flush: a batch never enriched after a SIGKILL.
        sends = [enriched_topic.send(value=frame)]
        sends += [counts_topic.send(value=value, partition=shard) for shard, value in enumerate(frames)]
        await hand_over(sends)
        state.backlog.was_enriched(msg.partition, msg.offset)
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

    @app.agent(packets_topic, name="enrich")
    async def enrich(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            if state.gaps.repeat(msg.topic, msg.partition, msg.offset):
                continue  # handed over by this worker before a rebalance: delivered again
            for missed in await missed_before(msg, committed_start(msg.tp)):
                await enrich_one(missed)
                processed(missed)
            await enrich_one(msg)
            processed(msg)
            # Paced after the batch is handed over, never before it is processed: Faust acks
            # the event in hand when the agent stops (its stream's ``finally``), so a stop
            # that came while this event waited would commit a batch never enriched (seen:
            # "enriched 74 of 75 batches, missing (2, 7)" after a SIGTERM).
            await pace()

    async def shard_of(partition: int, msg: Any) -> ShardCounter:
        """The counts partition's counter; on its first message here, rebuilt from the replay
        point the previous owner left in the table."""
        shard = state.shards.get(partition)
        if shard is not None:
            return shard
        shard = ShardCounter(partition, parts, settings.retention, settings.lateness, CLOSE_EVERY_S)
        final_before, start = decode_replay_point(table.get(shard_replay_key(partition)), partition)
        frames = await replay_messages(
            kafka.bootstrap, msg.topic, partition, start, msg.offset, partial(decode_frame, state.codec)
        )
        n = shard.replay(final_before, frames)
        state.shards[partition] = shard
        logger.info(
            "took over counts partition %d: re-read %d partials from offset %d (final before %d, "
            "%d packets already counted)",
            partition,
            n,
            start,
            final_before,
            shard.skipped_final,
        )
        return shard

    async def count_one(msg: Any) -> None:
        """Count one partial (or idle marker) into its counts partition's windows."""
        frame = await decoded(decode_frame, msg)
        if frame is None:
            return
        if frame.shards != parts or frame.shard != msg.partition:
            await send_dead(
                SchemaMismatch.reason,
                SchemaMismatch(
                    f"partials for counts partition {frame.shard} of {frame.shards}, "
                    f"read from {msg.partition} of {parts}"
                ),
                msg,
            )
            return
        shard = await shard_of(msg.partition, msg)
        result = shard.count(frame, msg.offset)
        if frame.source_offset >= 0:
            state.backlog.was_counted(msg.partition, frame.source_partition, frame.source_offset)
            state.counted.set()
        if result.repeat:
            logger.info(
                "counts partition %d: skipped the partial of packet batch [%d]@%d again (counted before)",
                msg.partition,
                frame.source_partition,
                frame.source_offset,
            )
        if result.late:
            logger.warning(
                "counts partition %d: %d packets from %s[%d]@%d arrived after their window was "
                "forgotten (watermark state %s)",
                msg.partition,
                result.late,
                msg.topic,
                msg.partition,
                msg.offset,
                shard.tracker.state(),
            )
        if result.replay_point is not None:
            table[shard_replay_key(msg.partition)] = result.replay_point
        state.partials += 1
        now = time.monotonic()
        if now - state.last_count_log > 10:
            # How far counting stands behind: the age of the partial in hand.
            logger.info(
                "counted %d partials (%d packets on counts partitions %s), merged %d window messages; "
                "the last partial was sent %.1f s ago",
                state.partials,
                sum(c.packets for c in state.shards.values()),
                sorted(state.shards),
                state.window_messages,
                time.time() - msg.timestamp,
            )
            state.last_count_log = now
        send_windows(msg.partition, result)

    @app.agent(counts_topic, name="count")
    async def count(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            # A counts partition new here is rebuilt from its replay point up to its first
            # message (shard_of): only later gaps are read past Faust.
            if msg.partition in state.shards:
                for missed in await missed_before(msg):
                    await count_one(missed)
                    processed(missed)
            await count_one(msg)
            processed(msg)

    def send_windows(partition: int, result: ShardResult) -> None:
        """A counts partition's closed windows to the merge stage, in the order they closed
        (into the producer's buffer at once: nothing else can send between two pieces)."""
        if result.watermark is None:
            return
        if result.closed:
            for rows in result.closed:
                for value in window_counts_frames(
                    state.codec,
                    partition,
                    parts,
                    result.watermark,
                    result.previous,
                    rows,
                    horizon=result.horizon,
                ):
                    windows_topic.send_soon(key=rows.kind.encode(), value=value)

    @app.timer(interval=CLOSE_EVERY_S)  # type: ignore[untyped-decorator]
    async def put_off_closes() -> None:
        # Closes a counts partition put off (it closed less than CLOSE_EVERY_S ago) happen
        # here when no further partial comes, e.g. after the last batch of a replay.
        for partition, shard in list(state.shards.items()):
            result = shard.tick()
            if result is not None:
                send_windows(partition, result)

    async def merger_of(kind: str, msg: Any) -> WindowMerger:
        """The kind's merger; on its first message here, rebuilt from the replay point."""
        merger = state.mergers.get(kind)
        if merger is not None:
            return merger
        merger = WindowMerger(kind, parts, table, detector, settings.retention, msg.partition)
        final_before, start = decode_replay_point(table.get(replay_key(kind)), msg.partition)
        messages = await replay_messages(
            kafka.bootstrap,
            msg.topic,
            msg.partition,
            start,
            msg.offset,
            partial(decode_window_counts, state.codec),
            kind.encode(),
        )
        n = merger.replay(final_before, messages)
        state.mergers[kind] = merger
        logger.info(
            "took over the %s windows (windows partition %d): re-read %d messages from offset %d "
            "(final before %d), published up to %s",
            kind,
            msg.partition,
            n,
            start,
            final_before,
            merger.published_until,
        )
        return merger

    async def merge_one(msg: Any) -> None:
        """Add one counts partition's closed windows to its kind's merger; send the alerts."""
        wc = await decoded(decode_window_counts, msg)
        if wc is None:
            return
        if wc.shards != parts:
            await send_dead(
                SchemaMismatch.reason,
                SchemaMismatch(f"windows of {wc.shards} counts partitions, not {parts}"),
                msg,
            )
            return
        merger = await merger_of(wc.rows.kind, msg)
        result = merger.add(wc, msg.offset)
        state.window_messages += 1
        if result.too_late:
            logger.info(
                "%s: %d windows published and forgotten came again from counts partition %d "
                "(after a takeover: unchanged)",
                wc.rows.kind,
                result.too_late,
                wc.shard,
            )
        for alert in result.alerts:
            logger.info("alert %s %s: %s", alert["kind"], alert["key"], alert["message"])
            alerts_topic.send_soon(key=alert["key"].encode(), value=state.codec.encode(ALERT, alert))

    @app.agent(windows_topic, name="merge")
    async def merge(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            # A windows partition carries several kinds; a kind new here is rebuilt from its
            # replay point (merger_of), so gaps are read past Faust only once this worker
            # merges from the partition.
            if any(m.point.partition == msg.partition for m in state.mergers.values()):
                for missed in await missed_before(msg):
                    await merge_one(missed)
                    processed(missed)
            await merge_one(msg)
            processed(msg)

    async def on_assigned(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        # A partition that is not ours any more is re-read by its new owner, and by this
        # worker again from its replay point if it ever comes back.
        assigned = args[0] if args else kwargs.get("assigned", set())
        counts = {tp.partition for tp in assigned if tp.topic == topics.counts}
        windows = {tp.partition for tp in assigned if tp.topic == topics.windows}
        for partition in [p for p in state.shards if p not in counts]:
            del state.shards[partition]
            logger.info("counts partition %d moved to another worker", partition)
        for kind in [k for k, m in state.mergers.items() if m.point.partition not in windows]:
            del state.mergers[kind]
            logger.info("the %s windows moved to another worker", kind)
        progress.reassigned()
        state.gaps.keep({(tp.topic, tp.partition) for tp in assigned})
        packets = {tp.partition for tp in assigned if tp.topic == topics.packets}
        state.backlog.forget(packets, counts)

    app.on_partitions_assigned.connect(cast(Any, on_assigned))

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def idle_markers() -> None:
        tps = [tp for tp in app.consumer.assignment() if tp.topic == topics.packets]
        if not tps:
            progress.looked(BLIND_AFTER_S)  # nothing to watch is not being blind
            return
        ends = await app.consumer.highwaters(*tps)
        if not progress.looked(BLIND_AFTER_S):
            logger.warning(
                "the broker was out of sight for over %.0f s: no packets partition is reported "
                "idle before %.0f s of silence from now",
                BLIND_AFTER_S,
                settings.idle_after,
            )
            return
        # Faust's committed offsets (the next offset to read, per partition), kept by its
        # consumer from the broker at assignment and from its own commits.
        committed = getattr(app.consumer, "_committed_offset", {})
        for tp in tps:
            end = ends.get(tp, 0)
            if progress.idle_due(tp.partition, progress.caught_up(tp.partition, end, committed.get(tp))):
                logger.info(
                    "packets partition %d is idle%s: marked so on every counts partition",
                    tp.partition,
                    " (no data yet)" if end == 0 else "",
                )
                for shard in range(parts):
                    marker = idle_marker(state.codec, tp.partition, shard, parts, empty=end == 0)
                    counts_topic.send_soon(value=marker, partition=shard)

    @app.timer(interval=WATCH_EVERY_S)  # type: ignore[untyped-decorator]
    async def watch_consumer() -> None:
        now = time.monotonic()
        recovery = cast(Any, app.tables).recovery
        if recovery.in_recovery:
            received = recovery._active_events_received_at
            for tp in stalled_recovery(
                now, getattr(recovery, "_recovery_started_at", None), recovery.active_remaining(), received
            ):
                offset = recovery.active_offsets[tp]
                position = await app.consumer.position(tp)
                logger.warning(
                    "changelog %s[%d]: recovery received nothing for %.0f s at offset %d of %d "
                    "(consumer position %s): reading it again from %d",
                    tp.topic,
                    tp.partition,
                    now - received.get(tp, recovery._recovery_started_at),
                    offset,
                    recovery.active_highwaters[tp],
                    position,
                    max(offset + 1, 0),
                )
                received[tp] = now
                await app.consumer.seek_wait({tp: max(offset + 1, 0)})
                app.consumer.resume_partitions([tp])
            return
        consumer = app.consumer
        held: dict[Any, Held] = getattr(consumer, "held", {})
        assignment = consumer.assignment()
        for tp, offset in held_too_long(now, {tp: h for tp, h in held.items() if tp in assignment}).items():
            logger.warning(
                "%s[%d]: reading again from offset %d, which reached no stream",
                tp.topic,
                tp.partition,
                offset,
            )
            held[tp] = Held(offset, now)
            await consumer.seek_wait({tp: offset})

    app.darkscope_state = state  # type: ignore[attr-defined]  # for tests and the bench
    return app
