"""The sink on the real broker and real chDB: exact loads, crash replays, retries, dead letters."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from core.settings import KafkaSettings, SinkSettings, TopicNames
from core.topics import watermarks
from schemas.codec import Codec
from sinks.sink import INTENT_PREFIX, Sink, SinkStats, parse_intent
from sinks.store import Store
from tests.kafka_helpers import read_all
from tests.sinks.conftest import PARTITIONS, EnrichedWeek
from tests.sinks.truth import assert_store_matches_truth

pytestmark = pytest.mark.broker


def produce(bootstrap: str, topic: str, frames: list[bytes]) -> None:
    """Frame i to partition i % 4, in order."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "message.max.bytes": 8_000_000}
    )
    for i, frame in enumerate(frames):
        producer.produce(topic, frame, partition=i % PARTITIONS)
    assert producer.flush(30) == 0


def health_record(packets_seen: int) -> dict[str, Any]:
    return {
        "sensor_id": "sim-0",
        "ts": datetime(2022, 4, 1, 0, 0, packets_seen % 60, tzinfo=UTC),
        "started": datetime(2022, 4, 1, tzinfo=UTC),
        "source": "simulate:2022Q2",
        "packets_seen": packets_seen,
        "packets_dropped_kernel": 0,
        "packets_malformed": {},
        "packets_out_of_prefix": 0,
        "packets_sent": packets_seen,
        "batches_sent": 1,
        "send_failed": 0,
        "monitored_addresses": 256,
        "prefixes": ["198.51.100.0/24"],
        "version": "0.1.0",
    }


def sink_settings(tmp_path: Path, **over: Any) -> SinkSettings:
    values: dict[str, Any] = {
        "dsn": f"chdb://{tmp_path / 'store'}",
        "group_id": f"sink-{tmp_path.name}",
        "batch_rows": 4000,
        "linger": 0.3,
        "max_backoff": 0.5,
    }
    values.update(over)
    return SinkSettings(**values)


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, tuple[int, str]]:
    """Partition -> (committed offset, commit metadata) of a consumer group."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return {tp.partition: (tp.offset, tp.metadata or "") for tp in probe.committed(parts, timeout=10)}
    finally:
        probe.close()


def run_once(
    store: Store, settings: SinkSettings, bootstrap: str, topics: TopicNames, sink_cls: type[Sink] = Sink
) -> SinkStats:
    sink = sink_cls(store, settings, KafkaSettings(bootstrap=bootstrap, partitions=PARTITIONS), topics)
    return sink.run(exit_when_idle=4.0)


def open_store(settings: SinkSettings) -> Store:
    store = Store.open(settings.dsn)
    store.migrate()
    return store


def test_sink_stores_a_week_exactly_with_sensor_health(
    kafka_bootstrap: str, topic_names: TopicNames, tmp_path: Path, week: EnrichedWeek
) -> None:
    produce(kafka_bootstrap, topic_names.enriched, week.frames)
    codec = Codec()
    produce(
        kafka_bootstrap,
        topic_names.sensors,
        [codec.encode("darkscope.SensorHealth", health_record(n)) for n in (100, 200, 300)],
    )
    settings = sink_settings(tmp_path)
    with open_store(settings) as store:
        stats = run_once(store, settings, kafka_bootstrap, topic_names)
        assert stats.rows == week.packets and stats.dead == 0 and stats.health == 3
        assert stats.inserts < len(week.frames)  # batches of a partition are joined
        assert_store_matches_truth(store, week.truth)
        latest = store.query(
            "SELECT sensor, max(packets_seen), any(monitored_addresses) FROM sensor_health GROUP BY sensor"
        ).result_rows
        assert latest == [("sim-0", 300, 256)]


class _Crash(BaseException):
    """Stands for the process dying: nothing after it runs (no commit)."""


class CrashAfterSecondInsert(Sink):
    """A sink that dies right after its second insert, before committing it."""

    inserted = 0

    def _insert(self, group: Any, token: str) -> None:
        super()._insert(group, token)
        type(self).inserted += 1
        if type(self).inserted == 2:
            raise _Crash(token)


def test_crash_between_insert_and_commit_is_replayed_without_double_counting(
    kafka_bootstrap: str, topic_names: TopicNames, tmp_path: Path, week: EnrichedWeek
) -> None:
    produce(kafka_bootstrap, topic_names.enriched, week.frames)
    settings = sink_settings(tmp_path)
    with open_store(settings) as store:
        with pytest.raises(_Crash) as crash:
            run_once(store, settings, kafka_bootstrap, topic_names, CrashAfterSecondInsert)
        token = str(crash.value)
        # The crashed group's intent is what the partition has committed.
        partition = int(token.split(":")[1])
        first, last = token.rsplit(":", 1)[1].split("-")
        committed = committed_offsets(kafka_bootstrap, settings.group_id, topic_names.enriched)
        assert committed[partition] == (int(first), f"{INTENT_PREFIX}{first}-{last}")
        # The group handed over after it (another partition's) may have its intent committed too.
        intents = [p for p, (offset, meta) in committed.items() if (parse_intent(meta) or (-1,))[0] == offset]
        assert 1 <= len(intents) <= 2

        stats = run_once(store, settings, kafka_bootstrap, topic_names)
        assert stats.replayed_groups == len(intents)
        assert_store_matches_truth(store, week.truth)


def test_unreadable_enriched_messages_go_to_the_dead_letter_topic(
    kafka_bootstrap: str, topic_names: TopicNames, tmp_path: Path, week: EnrichedWeek
) -> None:
    codec = Codec()
    short = dict(week.records[0])
    short["fp_flags"] = short["fp_flags"][:-2]  # one packet short: the columns disagree
    bad_index = dict(week.records[1])
    bad_index["regions"], bad_index["region_names"] = ["ZZ"], ["Unknown"]
    wrong_record = codec.encode_batch(week.batches[2].batch)  # a PacketBatch, not an EnrichedBatch
    bad = [
        b"\x00not avro at all",
        codec.encode("darkscope.EnrichedBatch", short),
        codec.encode("darkscope.EnrichedBatch", bad_index),
        wrong_record,
    ]
    good = week.frames[3:9]
    # Interleave: partition i % 4 gets a bad message among good ones.
    produce(kafka_bootstrap, topic_names.enriched, bad + good)
    settings = sink_settings(tmp_path)
    with open_store(settings) as store:
        stats = run_once(store, settings, kafka_bootstrap, topic_names)
        assert stats.dead == 4
        want = sum(len(e.batch) for e in week.batches[3:9])
        assert store.query("SELECT count() FROM packets").result_rows == [(want,)]
    dead = [codec.decode(m.value() or b"").record for m in read_all(kafka_bootstrap, topic_names.deadletter)]
    assert sorted(d["payload"] for d in dead) == sorted(bad)
    assert {d["stage"] for d in dead} == {"sink"}
    assert {d["source_topic"] for d in dead} == {topic_names.enriched}
    # The reason is the error class's own (core.errors), the same word the worker uses.
    assert {d["reason"] for d in dead} == {"undecodable"}
    assert all(
        "EnrichedBatch" in d["error"]
        or "column" in d["error"]
        or "index" in d["error"]
        or "frame" in d["error"]
        for d in dead
    )


def test_inserts_are_retried_until_clickhouse_takes_them(
    kafka_bootstrap: str, topic_names: TopicNames, tmp_path: Path, week: EnrichedWeek
) -> None:
    produce(kafka_bootstrap, topic_names.enriched, week.frames[:8])
    settings = sink_settings(tmp_path)
    with open_store(settings) as store:
        # The raw table is gone: every insert fails until it is back.
        store.client.command("DROP TABLE packets")

        def restore() -> None:
            time.sleep(2.0)
            with Store.open(settings.dsn) as other:
                other.client.command("DELETE FROM schema_migrations WHERE version = 1")
                other.migrate()

        sink = Sink(
            store, settings, KafkaSettings(bootstrap=kafka_bootstrap, partitions=PARTITIONS), topic_names
        )
        fixer = threading.Thread(target=restore)
        fixer.start()
        guard = threading.Timer(90, sink.stop)  # never hang the suite if the fix fails
        guard.start()
        try:
            stats = sink.run(exit_when_idle=4.0)
        finally:
            guard.cancel()
            fixer.join()
        assert stats.retries >= 1
        want = sum(len(e.batch) for e in week.batches[:8])
        assert stats.rows == want
        assert store.query("SELECT count() FROM packets").result_rows == [(want,)]


class Event(NamedTuple):
    what: str  # insert (started), inserted, commit
    partition: int
    offset: int  # the group's first offset for inserts, the committed offset for commits
    metadata: str  # commit metadata ('' for a final commit)
    thread: int


class RecordingSink(Sink):
    """A sink whose inserts take a while, logging inserts and commits as they happen."""

    insert_seconds = 0.2

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log: list[Event] = []
        self.in_hand_at_revoke: list[int] = []
        self.assigned: list[int] = []

    def _insert(self, group: Any, token: str) -> None:
        p, first = int(token.split(":")[-2]), int(group.first)
        self.log.append(Event("insert", p, first, "", threading.get_ident()))
        time.sleep(self.insert_seconds)
        super()._insert(group, token)
        self.log.append(Event("inserted", p, first, "", threading.get_ident()))

    def _commit(self, offsets: list[TopicPartition]) -> bool:
        ok = super()._commit(offsets)
        for tp in offsets:
            if ok and tp.topic == self.topics.enriched:
                self.log.append(
                    Event("commit", tp.partition, tp.offset, tp.metadata or "", threading.get_ident())
                )
        return ok

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        super()._on_assign(consumer, partitions)
        self.assigned += [tp.partition for tp in partitions if tp.topic == self.topics.enriched]

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.in_hand_at_revoke.append(len(self._inserts))
        super()._on_revoke(consumer, partitions)


def _at(log: list[Event], what: str, p: int, offset: int, metadata: str = "") -> int:
    return next(i for i, e in enumerate(log) if e[:4] == (what, p, offset, metadata))


def _check_commit_order(log: list[Event], ends: dict[int, int]) -> None:
    """Per partition: intent first..last, the group stored, offset last + 1, the next intent from there."""
    for p, end in ends.items():
        commits = [e for e in log if e.what == "commit" and e.partition == p]
        position = 0
        for intent, final in zip(commits[::2], commits[1::2], strict=True):
            first, last = parse_intent(intent.metadata) or (-1, -1)
            assert (intent.offset, first, final.metadata, final.offset) == (position, position, "", last + 1)
            assert _at(log, "commit", p, first, intent.metadata) < _at(log, "inserted", p, first)
            assert _at(log, "inserted", p, first) < _at(log, "commit", p, final.offset)
            position = final.offset
        assert position == end


def test_the_next_group_is_read_while_one_is_inserted_and_commits_follow_inserts_in_order(
    kafka_bootstrap: str, topic_names: TopicNames, tmp_path: Path, week: EnrichedWeek
) -> None:
    produce(kafka_bootstrap, topic_names.enriched, week.frames)
    settings = sink_settings(tmp_path, batch_rows=2000)
    with open_store(settings) as store:
        sink = RecordingSink(
            store, settings, KafkaSettings(bootstrap=kafka_bootstrap, partitions=PARTITIONS), topic_names
        )
        stats = sink.run(exit_when_idle=4.0)
        assert stats.rows == week.packets and stats.replayed_groups == 0
        assert_store_matches_truth(store, week.truth)
    ends = {p: hi for p, (_, hi) in watermarks(kafka_bootstrap, topic_names.enriched).items()}
    _check_commit_order(sink.log, ends)
    main = threading.get_ident()
    assert {e.thread for e in sink.log if e.what == "commit"} == {main}
    assert main not in {e.thread for e in sink.log if e.what == "insert"}  # inserts on the worker thread
    # Pipelined: some group's intent was committed while the group before it was being inserted.
    running, overlapped = 0, 0
    for e in sink.log:
        running += {"insert": 1, "inserted": -1}.get(e.what, 0)
        overlapped += e.what == "commit" and e.metadata != "" and running > 0
    assert overlapped > 0


def test_a_sink_joining_midstream_gets_partitions_committed_to_the_group_stored_once(
    kafka_bootstrap: str, topic_names: TopicNames, tmp_path: Path, week: EnrichedWeek
) -> None:
    half = len(week.frames) // 2
    produce(kafka_bootstrap, topic_names.enriched, week.frames[:half])
    # One enriched batch per insert, half a second each: the first sink still has inserts in
    # hand when it next polls Kafka and learns that the group rebalances.
    settings = sink_settings(tmp_path, batch_rows=1000)
    kafka = KafkaSettings(bootstrap=kafka_bootstrap, partitions=PARTITIONS)
    with open_store(settings) as store:
        first = RecordingSink(store, settings, kafka, topic_names)
        first.insert_seconds = 0.5
        second = RecordingSink(store, settings, kafka, topic_names)
        results: dict[str, SinkStats] = {}
        a = threading.Thread(target=lambda: results.setdefault("first", first.run(exit_when_idle=5.0)))
        b = threading.Thread(target=lambda: results.setdefault("second", second.run(exit_when_idle=5.0)))
        a.start()
        try:
            deadline = time.monotonic() + 60
            while not any(e.what == "commit" and e.metadata == "" for e in first.log):
                assert time.monotonic() < deadline and a.is_alive()
                time.sleep(0.05)
            b.start()
            while not second.assigned:
                assert time.monotonic() < deadline and b.is_alive()
                time.sleep(0.05)
            produce(kafka_bootstrap, topic_names.enriched, week.frames[half:])
        finally:
            a.join(120)
            if b.ident is not None:
                b.join(120)
        assert set(results) == {"first", "second"}
        # The first sink gave its partitions up with inserts in hand and committed them first:
        # nobody found an intent to replay, and every commit succeeded.
        assert max(first.in_hand_at_revoke) > 0
        assert results["first"].replayed_groups == results["second"].replayed_groups == 0
        assert results["first"].commit_failures == results["second"].commit_failures == 0
        assert results["second"].rows > 0
        assert results["first"].rows + results["second"].rows == week.packets
        assert_store_matches_truth(store, week.truth)
    ends = {p: hi for p, (_, hi) in watermarks(kafka_bootstrap, topic_names.enriched).items()}
    committed = committed_offsets(kafka_bootstrap, settings.group_id, topic_names.enriched)
    assert {p: offset for p, (offset, _) in committed.items()} == ends


def test_stop_mid_stream_stores_and_commits_the_groups_in_hand_and_a_restart_finishes_exactly(
    kafka_bootstrap: str, topic_names: TopicNames, tmp_path: Path, week: EnrichedWeek
) -> None:
    # The first half only: a sink handles every message one poll returns before it looks at stop().
    half = len(week.frames) // 2
    produce(kafka_bootstrap, topic_names.enriched, week.frames[:half])
    settings = sink_settings(tmp_path, batch_rows=1000)
    kafka = KafkaSettings(bootstrap=kafka_bootstrap, partitions=PARTITIONS)
    with open_store(settings) as store:
        sink = RecordingSink(store, settings, kafka, topic_names)
        sink.insert_seconds = 0.3

        def stop_after_first_commit() -> None:
            while not any(e.what == "commit" and e.metadata == "" for e in sink.log):
                time.sleep(0.05)
            sink.stop()

        stopper = threading.Thread(target=stop_after_first_commit)
        stopper.start()
        stopped = sink.run(exit_when_idle=30.0)
        stopper.join()
        # Stopped while inserting: every group read was stored and committed, none left half done.
        assert stopped.rows == sum(len(e.batch) for e in week.batches[:half])
        committed = committed_offsets(kafka_bootstrap, settings.group_id, topic_names.enriched)
        assert all(meta == "" for _, meta in committed.values())
        assert store.query("SELECT count() FROM packets").result_rows == [(stopped.rows,)]

        produce(kafka_bootstrap, topic_names.enriched, week.frames[half:])
        rest = run_once(store, settings, kafka_bootstrap, topic_names)
        assert rest.replayed_groups == 0
        assert stopped.rows + rest.rows == week.packets
        assert_store_matches_truth(store, week.truth)
