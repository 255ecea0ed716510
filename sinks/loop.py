"""The sink's loop: enriched batches and sensor health from a consumer into a store, exactly once.

Delivery is exactly-once into ClickHouse on top of Kafka's at-least-once, by the intents of
:mod:`sinks.intents`:

- Enriched batches of one partition are joined into inserts of about
  ``DARKSCOPE_SINK_BATCH_ROWS`` packets: a *group*, a run of offsets ``first..last``.
- Before inserting a group, the loop commits its intent, inserts with its deduplication token,
  then commits ``last + 1``; a partition resumed with a committed intent rebuilds exactly that
  group first. A crash between insert and commit never counts twice; nothing is committed
  before it is stored.
- Inserts run on one worker thread (chDB and the ClickHouse client release the GIL while they
  work) so that the loop reads, decodes and encodes the next group meanwhile: at most two
  inserts are in hand, and they finish in the order they were handed over, so offsets are
  committed in order. A group's intent is committed only once every earlier group of its
  partition is stored and committed (the committed offset is always where a replay starts).
  A revoked partition waits for the inserts in hand to finish and commits them first.
- An enriched batch of a packet batch this sink already stored or holds (the worker's enrich
  stage is at least once: it re-sends after a restart or a rebalance) is dropped, not stored
  twice (:mod:`sinks.repeats`); its offset is part of its group as usual.
- ClickHouse unavailable: the insert is retried with exponential backoff, forever.
- A message that is not a readable EnrichedBatch goes to the dead-letter topic (stage
  ``sink``) with its topic, partition and offset; its offset is part of its group, and its
  dead letter is flushed after the group is stored and before its offset is committed.

Sensor health records are inserted as they come (on the same worker thread, after the groups
handed over before them); ``sensor_health`` is a ReplacingMergeTree, so a record redelivered
after a crash collapses into its first copy.

Consumer, dead-letter publisher, store, clock and the sleep between retries are passed in
(:mod:`sinks.clients`): :class:`sinks.sink.Sink` gives it confluent-kafka and ClickHouse, the
tests in-memory fakes and chDB, so every case here is tested without a broker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException, Message, TopicPartition

from core.errors import CodecError, SchemaMismatch, StoreUnavailable, UndecodableMessage
from core.settings import SinkSettings, TopicNames
from schemas.codec import dead_letter
from schemas.names import ENRICHED_BATCH, SENSOR_HEALTH
from sinks.arrow import EnrichedColumns, columns_from_record
from sinks.clients import DeadLetterPublisher, SinkConsumer, SinkStore
from sinks.inserter import Inserter
from sinks.intents import Intent, dedup_token, intent_metadata, resumed_intent
from sinks.native import native_block
from sinks.repeats import Repeats, SourceKey

__all__ = ["SinkLoop", "SinkStats"]

logger = logging.getLogger(__name__)

_HEALTH_BATCH = 1000
# Inserts handed to the worker thread and not yet committed: one running, one waiting.
_IN_HAND = 2


@dataclass
class SinkStats:
    """What a sink has done since it started."""

    batches: int = 0
    rows: int = 0
    inserts: int = 0
    replayed_groups: int = 0
    dead: int = 0
    repeats: int = 0  # enriched batches dropped: their packet batch was stored already
    health: int = 0
    retries: int = 0
    commit_failures: int = 0
    first_message_at: float | None = None  # clock() of the first enriched batch
    last_insert_at: float | None = None  # clock() when the last insert was committed

    def rows_per_second(self) -> float:
        """Packets stored per second between the first batch read and the last commit."""
        if self.first_message_at is None or self.last_insert_at is None:
            return 0.0
        return self.rows / max(self.last_insert_at - self.first_message_at, 1e-9)


@dataclass
class _Group:
    """Enriched batches of one partition waiting to be inserted together."""

    first: int
    since: float
    last: int = -1
    rows: int = 0
    parts: list[EnrichedColumns] = field(default_factory=list)
    dead: list[tuple[str, str, Message]] = field(default_factory=list)
    keys: list[SourceKey] = field(default_factory=list)  # the packet batches of ``parts``
    block: tuple[list[str], bytes] | None = None  # the Native block, built when the group is flushed


class SinkLoop:
    """Consumes darkscope.enriched and darkscope.sensors into a store, exactly once."""

    def __init__(
        self,
        store: SinkStore,
        settings: SinkSettings,
        topics: TopicNames,
        consumer: SinkConsumer,
        dead: DeadLetterPublisher,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """A loop from ``consumer`` (subscribed and closed by :meth:`run`) into ``store``,
        dead letters to ``dead``."""
        self.store = store
        self.settings = settings
        self.topics = topics
        self.clock = clock
        self.sleep = sleep
        self.codec = store.codec
        self.stats = SinkStats()
        self._stop = False
        self._groups: dict[int, _Group] = {}
        self._intents: dict[int, Intent] = {}
        self._repeats = Repeats()
        self._health: list[dict[str, Any]] = []
        self._health_offsets: dict[int, int] = {}
        self._health_since = clock()
        self._assigned_at: float | None = None  # idle time counts from the last assignment
        # Every insert runs on this one worker thread while the loop reads the next group.
        self._inserts = Inserter(_IN_HAND, "darkscope-sink-insert")
        self._dead = dead
        self._consumer = consumer

    def stop(self) -> None:
        """Finish the groups in hand and return from :meth:`run` (safe from a signal handler)."""
        self._stop = True

    # -- the loop ------------------------------------------------------------------------

    def run(self, exit_when_idle: float | None = None) -> SinkStats:
        """Consume until :meth:`stop`, or ``exit_when_idle`` seconds without a message once
        partitions are assigned."""
        self._consumer.subscribe(
            [self.topics.enriched, self.topics.sensors], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        last_message = self.clock()
        last_log = self.clock()
        try:
            while not self._stop:
                # While inserts are in hand, come back soon to commit the ones that finished.
                msgs = self._consumer.consume(500, 0.02 if self._inserts else 0.1)
                for msg in msgs:
                    if msg.error():
                        logger.warning("kafka: %s", msg.error())
                        continue
                    self._handle(msg)
                now = self.clock()
                if msgs:
                    last_message = now
                self._flush_due(now)
                self._inserts.finish_done()
                if now - last_log >= 10:
                    logger.info("sink: %s", self.stats)
                    last_log = now
                if self._assigned_at is not None:
                    last_message = max(last_message, self._assigned_at)
                if (
                    exit_when_idle is not None
                    and self._assigned_at is not None
                    and not self._groups
                    and not self._health
                    and not self._inserts
                    and now - last_message >= exit_when_idle
                ):
                    break
            self._flush_all()
            self._inserts.finish_all()
        finally:
            # After a failure nothing more is committed: the intents in Kafka replay the rest.
            # An insert still retrying gives up at its next failure.
            self._stop = True
            self._inserts.close()
            self._consumer.close()
            self._dead.flush()
        logger.info("sink stopped: %s", self.stats)
        return self.stats

    def _on_assign(self, consumer: SinkConsumer, partitions: list[TopicPartition]) -> None:
        self._assigned_at = self.clock()
        mine = [
            TopicPartition(tp.topic, tp.partition) for tp in partitions if tp.topic == self.topics.enriched
        ]
        if not mine:
            return
        for tp in consumer.committed(mine, timeout=30):
            intent = resumed_intent(tp)
            if intent is not None:
                logger.info(
                    "%s[%d]: replaying the group %d-%d a previous sink started",
                    tp.topic,
                    tp.partition,
                    *intent,
                )
                self._intents[tp.partition] = intent

    def _on_revoke(self, consumer: SinkConsumer, partitions: list[TopicPartition]) -> None:
        # Inserts in hand are finished and committed while the partitions are still ours.
        # Groups not handed over yet are dropped: the next owner reads them again from the
        # committed offset (and replays a committed intent exactly).
        self._inserts.finish_all()
        for tp in partitions:
            if tp.topic == self.topics.enriched:
                dropped = self._groups.pop(tp.partition, None)
                if dropped is not None:
                    self._repeats.release(dropped.keys)
                self._intents.pop(tp.partition, None)
            else:
                self._health_offsets.pop(tp.partition, None)

    def _handle(self, msg: Message) -> None:
        if msg.topic() == self.topics.sensors:
            self._handle_health(msg)
            return
        p, offset = int(msg.partition() or 0), int(msg.offset() or 0)
        if self.stats.first_message_at is None:
            self.stats.first_message_at = self.clock()
        group = self._groups.get(p)
        if group is None:
            group = self._groups[p] = _Group(first=offset, since=self.clock())
            stale = self._intents.get(p)
            if stale is not None and stale.first != offset:
                logger.warning(
                    "%s[%d]: intent %s does not start at offset %d; ignored", msg.topic(), p, stale, offset
                )
                del self._intents[p]
        intent = self._intents.get(p)
        group.last = offset
        try:
            decoded = self.codec.decode(bytes(msg.value() or b""))
            if decoded.name != ENRICHED_BATCH:
                raise UndecodableMessage(f"{decoded.name} is not an EnrichedBatch")
            cols = columns_from_record(self.codec, decoded.record)
        except CodecError as exc:
            group.dead.append((exc.reason, str(exc), msg))
        else:
            key = (cols.source_topic, cols.source_partition, cols.source_offset)
            if self._repeats.claim(key):
                group.parts.append(cols)
                group.keys.append(key)
                group.rows += len(cols)
                self.stats.batches += 1
            else:
                self.stats.repeats += 1
                logger.info(
                    "%s[%d]@%d: packet batch %s:%d:%d already stored; dropped", msg.topic(), p, offset, *key
                )
        if intent is not None:
            if offset >= intent.last:
                self._flush(p)
        elif group.rows >= self.settings.batch_rows:
            self._flush(p)

    def _handle_health(self, msg: Message) -> None:
        p = int(msg.partition() or 0)
        try:
            decoded = self.codec.decode(bytes(msg.value() or b""))
            if decoded.name != SENSOR_HEALTH:
                raise UndecodableMessage(f"{decoded.name} is not a SensorHealth record")
            _check_health(decoded.record)
        except CodecError as exc:
            self._send_dead(exc.reason, str(exc), msg)
        else:
            if not self._health:
                self._health_since = self.clock()
            self._health.append(decoded.record)
        self._health_offsets[p] = int(msg.offset() or 0) + 1
        if len(self._health) >= _HEALTH_BATCH:
            self._flush_health()

    # -- flushing ------------------------------------------------------------------------

    def _flush_due(self, now: float) -> None:
        for p, group in list(self._groups.items()):
            if p not in self._intents and now - group.since >= self.settings.linger:
                self._flush(p)
        if self._health_offsets and now - self._health_since >= self.settings.linger:
            self._flush_health()

    def _flush_all(self) -> None:
        for p in list(self._groups):
            self._flush(p)
        self._flush_health()

    def _flush(self, p: int) -> None:
        """Hand a group to the worker thread: block built, earlier groups of ``p`` committed,
        intent committed."""
        group = self._groups.pop(p)
        topic = self.topics.enriched
        intent = self._intents.pop(p, None)
        if group.parts:
            # Built here, while the worker thread inserts the group before.
            group.block = native_block(group.parts)
            group.parts = []
        # The intent moves the partition's committed offset to this group: everything before
        # it must be stored and committed first. Making room first also bounds the groups
        # whose intent is committed but not their offsets (a crash replays those).
        self._inserts.finish_key(p)
        self._inserts.make_room()
        if intent is None:
            intent_tp = TopicPartition(
                topic, p, group.first, metadata=intent_metadata(group.first, group.last)
            )
            if not self._commit([intent_tp]):
                self._repeats.release(group.keys)
                return  # not ours any more: the next owner reads the group again
        else:
            self.stats.replayed_groups += 1
            if intent != (group.first, group.last):
                logger.warning(
                    "%s[%d]: replayed group %d-%d differs from its intent %s",
                    topic,
                    p,
                    group.first,
                    group.last,
                    intent,
                )
        token = dedup_token(topic, p, group.first, group.last)
        self._inserts.hand_over(
            (lambda: self._insert(group, token)) if group.block is not None else (lambda: None),
            lambda: self._stored(p, group),
            key=p,
        )

    def _insert(self, group: _Group, token: str) -> None:
        """On the worker thread: insert a group's block until ClickHouse takes it."""
        assert group.block is not None
        columns, block = group.block
        self._retrying(
            f"ClickHouse insert {token}", lambda: self.store.insert_native("packets", columns, block, token)
        )

    def _stored(self, p: int, group: _Group) -> None:
        """Once a group is stored: its dead letters, then its offsets."""
        if group.block is not None:
            self.stats.inserts += 1
            self.stats.rows += group.rows
        for reason, error, msg in group.dead:
            self._send_dead(reason, error, msg)
        if group.dead:
            self._dead.flush()
        self._commit([TopicPartition(self.topics.enriched, p, group.last + 1, metadata="")])
        self.stats.last_insert_at = self.clock()

    def _flush_health(self) -> None:
        if self._health or self._health_offsets:
            records = self._health
            offsets = [TopicPartition(self.topics.sensors, p, o) for p, o in self._health_offsets.items()]

            def stored() -> None:
                self.stats.health += len(records)
                if offsets:
                    self._commit(offsets)

            self._inserts.hand_over(
                lambda: self._retrying(
                    "sensor health insert", lambda: self.store.insert_sensor_health(records)
                ),
                stored,
            )
            self._health = []
            self._health_offsets = {}
        self._health_since = self.clock()

    def _retrying(self, what: str, insert: Callable[[], object]) -> None:
        """On the worker thread: call ``insert`` until ClickHouse takes it, backing off."""
        delay = 0.5
        while True:
            try:
                insert()
                return
            except StoreUnavailable as exc:
                if self._stop:
                    # Asked to stop while ClickHouse is down: leave uncommitted; whoever
                    # resumes the partition replays this group from its committed intent.
                    raise
                self.stats.retries += 1
                logger.warning("%s failed, retrying in %.1f s: %s", what, delay, exc)
                self.sleep(delay)
                delay = min(delay * 2, self.settings.max_backoff)

    def _send_dead(self, reason: str, error: str, msg: Message) -> None:
        self.stats.dead += 1
        logger.warning("dead letter from %s[%s]@%s: %s", msg.topic(), msg.partition(), msg.offset(), error)
        frame = dead_letter(
            self.codec,
            "sink",
            reason,
            error,
            (str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0)),
            bytes(msg.value() or b""),
            msg.key(),
        )
        self._dead.send(self.topics.deadletter, frame, packets=0)

    def _commit(self, offsets: list[TopicPartition]) -> bool:
        try:
            done = self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            self.stats.commit_failures += 1
            logger.warning("commit of %s failed: %s", offsets, exc)
            return False
        failed = [tp for tp in done or [] if tp.error is not None]
        if failed:
            self.stats.commit_failures += 1
            logger.warning("commit failed for %s", failed)
            return False
        return True


def _check_health(record: dict[str, Any]) -> None:
    """A SensorHealth record the store can take: its counts are UInt64 columns, so a negative
    one would fail every insert, and the sink would retry it for ever (found by fuzzing)."""
    counted = ("packets_", "batches_", "send_failed", "monitored_addresses")
    counts = {k: v for k, v in record.items() if k.startswith(counted) and isinstance(v, int)}
    malformed = record.get("packets_malformed") or {}
    counts.update({f"packets_malformed[{k}]": v for k, v in malformed.items()})
    negative = sorted(k for k, v in counts.items() if v < 0)
    if negative:
        raise SchemaMismatch(f"SensorHealth with negative counts: {', '.join(negative)}")
