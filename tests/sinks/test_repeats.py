"""An enriched batch the worker sends again (its enrich stage is at least once) is stored once:
the sink knows the packet batches it stored or holds by their source (sinks.repeats)."""

from __future__ import annotations

from pathlib import Path

from sinks.repeats import Repeats
from sinks.store import Store
from tests.sinks.conftest import EnrichedWeek, sink_settings
from tests.sinks.test_loop import ENRICHED, TOPICS, Rig
from tests.sinks.truth import assert_store_matches_truth


def test_a_source_batch_claimed_twice_is_a_repeat_and_a_released_one_is_new_again() -> None:
    seen = Repeats()
    assert seen.claim(("darkscope.packets", 0, 7))
    assert not seen.claim(("darkscope.packets", 0, 7))
    assert seen.claim(("darkscope.packets", 1, 7))  # another partition's offset 7
    assert seen.claim(("other.packets", 0, 7))  # another topic's
    seen.release([("darkscope.packets", 0, 7)])
    assert seen.claim(("darkscope.packets", 0, 7))


def test_batches_without_provenance_are_never_repeats() -> None:
    seen = Repeats()
    assert seen.claim(("", 0, -1)) and seen.claim(("", 0, -1))


def test_memory_holds_only_the_last_window_of_offsets_per_partition() -> None:
    seen = Repeats(window=100)
    for offset in range(10_000):
        assert seen.claim(("t", 0, offset))
    assert len(seen) <= 2 * 100 + 1
    assert not seen.claim(("t", 0, 9_990))  # recent: still known


def test_an_enriched_batch_sent_again_is_stored_once(
    store: Store, tmp_path: Path, week: EnrichedWeek
) -> None:
    rig = Rig()
    # The worker re-sends a stretch of batches after a restart: the same packet batches
    # (same source partition and offset), at new offsets and other partitions of the topic.
    again = week.frames[10:25]
    rig.cluster.produce_all(ENRICHED, week.frames + again[1:] + again[:1])
    settings = sink_settings(tmp_path)
    stats = rig.run(store, settings)
    assert stats.repeats == len(again)
    assert stats.rows == week.packets
    assert_store_matches_truth(store, week.truth)
    assert rig.committed(settings) == rig.all_committed()  # repeats' offsets committed too


def test_a_batch_dropped_with_its_revoked_group_is_not_a_repeat_when_read_again(
    store: Store, tmp_path: Path, week: EnrichedWeek
) -> None:
    rig = Rig()
    rig.cluster.produce_all(ENRICHED, week.frames)
    settings = sink_settings(tmp_path, batch_rows=1_000_000)  # groups end by linger only
    a = rig.consumer(settings, "a", max_messages=1)
    b = rig.consumer(settings, "b")
    # b joins while a reads its groups (a's groups of b's partitions are dropped), then leaves
    # before reading anything: a gets the partitions back and reads those batches again.
    rig.journal.when(
        lambda e: len(rig.journal.of("read", "a")) == 6, lambda: b.subscribe([ENRICHED, TOPICS.sensors])
    )
    rig.journal.when(lambda e: len(rig.journal.of("read", "a")) == 9, b.close)
    stats = rig.run(store, settings, a)
    revoked = rig.journal.of("revoke", "a")
    assert revoked
    reads = [(e.partition, e.offset) for e in rig.journal.of("read", "a")]
    assert len(reads) > len(set(reads))  # some batches were read twice
    assert stats.repeats == 0
    assert stats.rows == week.packets
    assert_store_matches_truth(store, week.truth)
    assert rig.committed(settings) == rig.all_committed()
