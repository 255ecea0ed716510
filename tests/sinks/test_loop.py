"""The sink's loop on in-memory Kafka (tests/sinks/memory.py) and real chDB: exact loads, crash
replays, retries, dead letters, revokes and stops, without a broker. The loop's own work takes
milliseconds; what time a test takes is chDB's (about 50 ms an insert, with its rollup views)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from core.settings import SinkSettings, TopicNames
from schemas.codec import Codec
from schemas.names import ENRICHED_BATCH, SENSOR_HEALTH
from sinks.clients import SinkStore
from sinks.intents import intent_metadata, parse_intent, resumed_intent
from sinks.loop import SinkLoop, SinkStats
from sinks.store import Store
from tests.sinks.conftest import PARTITIONS, EnrichedWeek, health_record, sink_settings
from tests.sinks.memory import (
    Crash,
    Event,
    Journal,
    ManualClock,
    MemoryCluster,
    MemoryConsumer,
    MemoryPublisher,
    RecordingStore,
)
from tests.sinks.truth import assert_store_matches_truth

TOPICS = TopicNames()
ENRICHED = TOPICS.enriched


@dataclass
class Rig:
    """One in-memory cluster, the clock every loop and consumer of a test shares, dead letters."""

    cluster: MemoryCluster = field(default_factory=lambda: MemoryCluster(PARTITIONS))
    clock: ManualClock = field(default_factory=ManualClock)

    def __post_init__(self) -> None:
        self.publisher = MemoryPublisher(self.cluster)

    @property
    def journal(self) -> Journal:
        return self.cluster.journal

    def consumer(
        self, settings: SinkSettings, name: str = "sink", max_messages: int | None = None
    ) -> MemoryConsumer:
        return MemoryConsumer(self.cluster, settings.group_id, name, max_messages, wait=self.clock.advance)

    def loop(
        self,
        store: SinkStore,
        settings: SinkSettings,
        consumer: MemoryConsumer | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> SinkLoop:
        return SinkLoop(
            store,
            settings,
            TOPICS,
            consumer or self.consumer(settings),
            self.publisher,
            clock=self.clock,
            sleep=sleep or self.clock.advance,
        )

    def run(
        self, store: SinkStore, settings: SinkSettings, consumer: MemoryConsumer | None = None
    ) -> SinkStats:
        return self.loop(store, settings, consumer).run(exit_when_idle=4.0)

    def committed(self, settings: SinkSettings, topic: str = ENRICHED) -> dict[int, tuple[int, str]]:
        return self.cluster.committed(settings.group_id, topic)

    def all_committed(self) -> dict[int, tuple[int, str]]:
        """Every partition of the enriched topic at its end, with empty metadata."""
        return {p: (end, "") for p, end in self.cluster.end_offsets(ENRICHED).items()}


def _rows(week: EnrichedWeek, partitions: set[int]) -> int:
    """Packets of the week's batches produced to ``partitions`` (batch i went to i % 4)."""
    return sum(len(e.batch) for i, e in enumerate(week.batches) if i % PARTITIONS in partitions)


def _assert_commit_order(log: Journal, ends: dict[int, int]) -> None:
    """Per partition: intent first..last, the group stored, offset last + 1, the next intent from there."""
    for p, end in ends.items():
        commits = [e for e in log.of("commit", topic=ENRICHED) if e.partition == p]
        position = 0
        for intent, final in zip(commits[::2], commits[1::2], strict=True):
            first, last = parse_intent(intent.metadata) or (-1, -1)
            assert (intent.offset, first, final.metadata, final.offset) == (position, position, "", last + 1)
            inserted = next(e for e in log.of("inserted") if (e.partition, e.offset) == (p, first))
            assert intent.seq < inserted.seq < final.seq
            position = final.offset
        assert position == end


def _last_commits(journal: Journal, member: str, before: int) -> dict[int, Event]:
    """Per enriched partition, the last commit ``member`` made before journal position ``before``."""
    return {e.partition: e for e in journal.of("commit", member, ENRICHED) if e.seq < before}


def test_a_week_is_stored_exactly_with_sensor_health_and_every_offset_committed(
    store: Store, tmp_path: Path, week: EnrichedWeek
) -> None:
    rig = Rig()
    rig.cluster.produce_all(ENRICHED, week.frames)
    codec = Codec()
    rig.cluster.produce_all(
        TOPICS.sensors, [codec.encode(SENSOR_HEALTH, health_record(n)) for n in (100, 200, 300)]
    )
    settings = sink_settings(tmp_path)
    stats = rig.run(store, settings)
    assert stats.rows == week.packets and stats.dead == 0 and stats.health == 3
    assert stats.replayed_groups == 0 and stats.commit_failures == 0
    assert stats.inserts < len(week.frames)  # batches of a partition are joined
    assert_store_matches_truth(store, week.truth)
    latest = store.query(
        "SELECT sensor, max(packets_seen), any(monitored_addresses) FROM sensor_health GROUP BY sensor"
    ).result_rows
    assert latest == [("sim-0", 300, 256)]
    assert rig.committed(settings) == rig.all_committed()
    assert rig.committed(settings, TOPICS.sensors) == {0: (1, ""), 1: (1, ""), 2: (1, "")}


def test_a_crash_between_insert_and_commit_is_replayed_under_the_same_token_and_counted_once(
    store: Store, tmp_path: Path, week: EnrichedWeek
) -> None:
    rig = Rig()
    rig.cluster.produce_all(ENRICHED, week.frames)
    settings = sink_settings(tmp_path, batch_rows=2000)
    with pytest.raises(Crash) as crash:
        rig.run(RecordingStore(store, rig.journal, crash_after=2), settings)
    token = str(crash.value)
    _, partition, offsets = token.rsplit(":", 2)
    first, last = (int(o) for o in offsets.split("-"))
    # The crashed group's intent is what its partition has committed.
    committed = rig.committed(settings)
    assert committed[int(partition)] == (first, intent_metadata(first, last))
    # The group handed over after it (another partition's) may have its intent committed too.
    replays = [
        p
        for p, (offset, meta) in committed.items()
        if resumed_intent(TopicPartition(ENRICHED, p, offset, metadata=meta))
    ]
    assert 1 <= len(replays) <= 2

    # Resumed with another batch size, the sink still rebuilds exactly the groups it announced:
    # the same token again, which ClickHouse drops.
    again = RecordingStore(store, rig.journal)
    stats = rig.run(again, sink_settings(tmp_path, batch_rows=1_000_000))
    assert stats.replayed_groups == len(replays)
    assert token in again.tokens
    assert_store_matches_truth(store, week.truth)
    assert rig.committed(settings) == rig.all_committed()


def test_unreadable_messages_are_dead_lettered_once_their_group_is_stored_and_before_its_commit(
    store: Store, tmp_path: Path, week: EnrichedWeek
) -> None:
    codec = Codec()
    short = dict(week.records[0])
    short["fp_flags"] = short["fp_flags"][:-2]  # one packet short: the columns disagree
    bad_index = dict(week.records[1])
    bad_index["regions"], bad_index["region_names"] = ["ZZ"], ["Unknown"]
    bad = [
        b"\x00not avro at all",
        codec.encode(ENRICHED_BATCH, short),
        codec.encode(ENRICHED_BATCH, bad_index),
        codec.encode_batch(week.batches[2].batch),  # a PacketBatch, not an EnrichedBatch
    ]
    rig = Rig()
    rig.cluster.produce_all(ENRICHED, bad + week.frames[3:9])  # partition i % 4 gets a bad one first
    rig.cluster.produce(TOPICS.sensors, week.frames[3], 0)  # an EnrichedBatch is no SensorHealth
    settings = sink_settings(tmp_path)
    stats = rig.run(RecordingStore(store, rig.journal), settings)
    assert stats.dead == 5
    assert stats.rows == sum(len(e.batch) for e in week.batches[3:9])
    assert store.query("SELECT count() FROM packets").result_rows == [(stats.rows,)]
    assert rig.committed(settings) == rig.all_committed()
    assert rig.committed(settings, TOPICS.sensors) == {0: (1, "")}

    letters = [codec.decode(value).record for _, value in rig.publisher.sent]
    assert [topic for topic, _ in rig.publisher.sent] == [TOPICS.deadletter] * 5
    assert sorted(d["payload"] for d in letters) == sorted([*bad, week.frames[3]])
    assert {d["stage"] for d in letters} == {"sink"}
    # The reason is the error class's own (core.errors), the same word the worker uses.
    assert {d["reason"] for d in letters} == {"undecodable"}
    sends = {e.offset: e for e in rig.journal.of("dead")}
    for i, d in enumerate(letters):
        if d["source_topic"] != ENRICHED:
            continue
        p, offset = d["source_partition"], d["source_offset"]
        assert (p, offset) == (bad.index(d["payload"]), 0)
        # Sent after its group's insert, flushed before its group's offsets are committed.
        commit = next(
            e for e in rig.journal.of("commit", topic=ENRICHED) if e.partition == p and e.metadata == ""
        )
        inserted = next(e for e in rig.journal.of("inserted") if e.partition == p and e.offset == offset)
        flush = next(e for e in rig.journal.of("flush") if e.seq > sends[i].seq)
        assert inserted.seq < sends[i].seq < flush.seq < commit.seq


def test_inserts_are_retried_with_growing_backoff_until_clickhouse_takes_them(
    store: Store, tmp_path: Path, week: EnrichedWeek
) -> None:
    rig = Rig()
    rig.cluster.produce_all(ENRICHED, week.frames[:8])
    settings = sink_settings(tmp_path, max_backoff=2.0)
    # The raw table is gone: every insert fails until the fourth wait brings it back.
    store.client.command("DROP TABLE packets")
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 4:
            with Store.open(settings.dsn) as other:
                # The steps that build the raw table: 1 creates it, 7 brings it to PacketBatch v2.
                other.client.command("DELETE FROM schema_migrations WHERE version IN (1, 7)")
                other.migrate()

    stats = rig.loop(store, settings, sleep=sleep).run(exit_when_idle=4.0)
    assert waits == [0.5, 1.0, 2.0, 2.0] and stats.retries == 4
    want = sum(len(e.batch) for e in week.batches[:8])
    assert stats.rows == want
    assert store.query("SELECT count() FROM packets").result_rows == [(want,)]
    assert rig.committed(settings) == rig.all_committed()


def test_the_next_group_is_read_while_one_is_inserted_and_commits_follow_inserts_in_order(
    store: Store, tmp_path: Path, week: EnrichedWeek
) -> None:
    rig = Rig()
    rig.cluster.produce_all(ENRICHED, week.frames)
    settings = sink_settings(tmp_path, batch_rows=2000)
    consumer = rig.consumer(settings, max_messages=2)
    stats = rig.run(RecordingStore(store, rig.journal, seconds=0.01), settings, consumer)
    assert stats.rows == week.packets and stats.replayed_groups == 0
    assert_store_matches_truth(store, week.truth)
    log = rig.journal
    _assert_commit_order(log, rig.cluster.end_offsets(ENRICHED))
    main = threading.get_ident()
    assert {e.thread for e in log.of("commit")} == {main}
    assert main not in {e.thread for e in log.of("insert")}  # inserts on the worker thread
    # Pipelined: some group's intent was committed while the group before it was being inserted.
    running, overlapped = 0, 0
    for e in log.events:
        running += {"insert": 1, "inserted": -1}.get(e.what, 0)
        overlapped += e.what == "commit" and e.metadata != "" and running > 0
    assert overlapped > 0


def test_a_partitions_next_intent_waits_until_its_group_before_is_stored_and_committed(
    store: Store, tmp_path: Path, week: EnrichedWeek
) -> None:
    rig = Rig()
    for frame in week.frames[:8]:  # one partition: its groups follow each other in the inserter
        rig.cluster.produce(ENRICHED, frame, 0)
    settings = sink_settings(tmp_path, batch_rows=1000)
    stats = rig.run(RecordingStore(store, rig.journal, seconds=0.01), settings)
    assert stats.rows == sum(len(e.batch) for e in week.batches[:8]) and stats.inserts >= 4
    _assert_commit_order(rig.journal, rig.cluster.end_offsets(ENRICHED))


def test_a_revoked_partition_commits_its_inserts_in_hand_before_the_next_owner_reads_it(
    store: Store, tmp_path: Path, week: EnrichedWeek
) -> None:
    rig = Rig()
    rig.cluster.produce_all(ENRICHED, week.frames)
    settings = sink_settings(tmp_path, batch_rows=1000)  # one enriched batch per insert
    slow = RecordingStore(store, rig.journal, seconds=0.01)
    a = rig.consumer(settings, "a", max_messages=1)
    b = rig.consumer(settings, "b", max_messages=1)

    # b joins the group right after a has stored one group and committed the next one's intent.
    def a_committed_an_intent_after_a_group(e: Event) -> bool:
        finals = [c for c in rig.journal.of("commit", "a", ENRICHED) if c.metadata == ""]
        return bool(finals) and e.what == "commit" and e.member == "a" and e.metadata != ""

    rig.journal.when(a_committed_an_intent_after_a_group, lambda: b.subscribe([ENRICHED, TOPICS.sensors]))
    first = rig.run(slow, settings, a)
    second = rig.run(slow, settings, b)

    revoke, reassign = rig.journal.of("revoke", "a")[0], rig.journal.of("assign", "a")[1]
    in_hand = {p: e for p, e in _last_commits(rig.journal, "a", revoke.seq).items() if e.metadata}
    assert in_hand, "a should have held an insert when its partitions were revoked"
    for p, intent in in_hand.items():
        _, last = parse_intent(intent.metadata) or (-1, -1)
        final = next(
            e for e in rig.journal.of("commit", "a", ENRICHED) if (e.partition, e.offset) == (p, last + 1)
        )
        assert revoke.seq < final.seq < reassign.seq  # committed while still a's
    # Nobody found an intent to replay, and every commit succeeded.
    assert first.replayed_groups == second.replayed_groups == 0
    assert first.commit_failures == second.commit_failures == 0
    assert second.rows > 0 and first.rows + second.rows == week.packets
    assert_store_matches_truth(store, week.truth)
    assert rig.committed(settings) == rig.all_committed()


def test_a_group_still_being_read_when_revoked_is_dropped_and_read_again_by_the_next_owner(
    store: Store, tmp_path: Path, week: EnrichedWeek
) -> None:
    rig = Rig()
    rig.cluster.produce_all(ENRICHED, week.frames)
    settings = sink_settings(tmp_path, batch_rows=1_000_000)  # groups end by linger only
    a = rig.consumer(settings, "a", max_messages=1)
    b = rig.consumer(settings, "b", max_messages=1)
    rig.journal.when(
        lambda e: len(rig.journal.of("read", "a")) == 6, lambda: b.subscribe([ENRICHED, TOPICS.sensors])
    )
    first = rig.run(RecordingStore(store, rig.journal), settings, a)
    second = rig.run(store, settings, b)

    revoke = rig.journal.of("revoke", "a")[0]
    assert not [e for e in rig.journal.events[: revoke.seq] if e.what in ("insert", "commit")]
    # What a had read of b's partitions, b reads again from the start.
    b_parts = {e.partition for e in rig.journal.of("read", "b")}
    a_read = {(e.partition, e.offset) for e in rig.journal.of("read", "a") if e.seq < revoke.seq}
    assert {(p, o) for p, o in a_read if p in b_parts}
    assert a_read <= {(e.partition, e.offset) for e in rig.journal.of("read")[6:]}
    assert first.rows + second.rows == week.packets
    assert first.rows == _rows(week, {0, 1}) and second.rows == _rows(week, {2, 3})
    assert_store_matches_truth(store, week.truth)


def test_stop_mid_stream_stores_and_commits_the_groups_in_hand_and_a_restart_finishes_exactly(
    store: Store, tmp_path: Path, week: EnrichedWeek
) -> None:
    rig = Rig()
    rig.cluster.produce_all(ENRICHED, week.frames)
    settings = sink_settings(tmp_path, batch_rows=1000)
    slow = RecordingStore(store, rig.journal, seconds=0.01)
    sink = rig.loop(slow, settings, rig.consumer(settings, max_messages=1))
    rig.journal.when(lambda e: e.what == "commit" and e.metadata == "" and e.topic == ENRICHED, sink.stop)
    stopped = sink.run(exit_when_idle=30.0)
    # Stopped while inserting: every group read was stored and committed, none left half done.
    assert 0 < stopped.rows < week.packets
    assert all(meta == "" for _, meta in rig.committed(settings).values())
    assert store.query("SELECT count() FROM packets").result_rows == [(stopped.rows,)]

    rest = rig.run(store, settings)
    assert rest.replayed_groups == 0
    assert stopped.rows + rest.rows == week.packets
    assert_store_matches_truth(store, week.truth)


def test_a_group_whose_intent_commit_is_refused_is_not_inserted_and_the_next_owner_reads_it(
    store: Store, tmp_path: Path, week: EnrichedWeek
) -> None:
    rig = Rig()
    rig.cluster.produce_all(ENRICHED, week.frames)
    settings = sink_settings(tmp_path)
    refusing = rig.consumer(settings)
    refusing.refuse = {(ENRICHED, 0)}  # as if partition 0 were no longer this consumer's
    recording = RecordingStore(store, rig.journal)
    stats = rig.run(recording, settings, refusing)
    assert stats.commit_failures > 0
    assert stats.rows == _rows(week, {1, 2, 3})
    assert 0 not in rig.committed(settings)
    assert not [t for t in recording.tokens if t.startswith(f"{ENRICHED}:0:")]

    rest = rig.run(store, settings)
    assert rest.rows == _rows(week, {0})
    assert_store_matches_truth(store, week.truth)
    assert rig.committed(settings) == rig.all_committed()


def test_a_sensor_health_record_with_a_negative_count_is_dead_lettered_not_retried_for_ever(
    store: Store, tmp_path: Path
) -> None:
    codec = Codec()
    bad = dict(health_record(100))
    bad["packets_seen"] = -1  # UInt64 in the store: the insert would fail at every retry
    rig = Rig()
    rig.cluster.produce(TOPICS.sensors, codec.encode(SENSOR_HEALTH, bad), 0)
    rig.cluster.produce(TOPICS.sensors, codec.encode(SENSOR_HEALTH, health_record(200)), 0)
    settings = sink_settings(tmp_path)
    stats = rig.run(store, settings)
    assert (stats.dead, stats.health) == (1, 1)
    letters = [codec.decode(value).record for _, value in rig.publisher.sent]
    assert [(d["reason"], d["source_topic"]) for d in letters] == [("bad_record", TOPICS.sensors)]
    assert "packets_seen" in letters[0]["error"]
    assert store.query("SELECT max(packets_seen) FROM sensor_health").result_rows == [(200,)]
    assert rig.committed(settings, TOPICS.sensors) == {0: (2, "")}
