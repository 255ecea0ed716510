"""The worker's watch over two stalls of Faust's consumer (streams.watch): pure decisions."""

from __future__ import annotations

from streams.watch import STALL_AFTER_S, Gaps, Held, held_too_long, stalled_recovery


def test_a_recovery_is_not_stalled_before_stall_after_seconds() -> None:
    assert stalled_recovery(10.0, started_at=0.0, remaining={"c2": 5}, received_at={}) == []


def test_a_changelog_partition_that_received_nothing_since_the_start_is_stalled() -> None:
    now = STALL_AFTER_S + 1
    stalled = stalled_recovery(now, 0.0, remaining={"c0": 3, "c2": 5, "c3": 0}, received_at={"c0": now - 1})
    # c0 receives events, c3 has nothing left to read: only c2 is stalled.
    assert stalled == ["c2"]


def test_a_partition_that_received_events_lately_is_not_stalled() -> None:
    now = 100.0
    assert stalled_recovery(now, 0.0, {"c2": 5}, {"c2": now - STALL_AFTER_S + 1}) == []
    assert stalled_recovery(now, 0.0, {"c2": 5}, {"c2": now - STALL_AFTER_S}) == ["c2"]


def test_no_recovery_started_means_nothing_stalled() -> None:
    assert stalled_recovery(1e9, None, {"c2": 5}, {}) == []


def test_a_commit_held_for_stall_after_seconds_is_read_again_from_its_offset() -> None:
    held = {"p0": Held(offset=10, since=0.0), "p1": Held(offset=7, since=5.0)}
    assert held_too_long(STALL_AFTER_S + 1, held) == {"p0": 10}
    assert held_too_long(STALL_AFTER_S + 6, held) == {"p0": 10, "p1": 7}
    assert held_too_long(1.0, held) == {}


def test_no_gap_is_known_for_a_partition_never_seen_without_a_start() -> None:
    gaps = Gaps()
    assert not gaps.missing("counts", 0, 40)
    assert gaps.missing("packets", 0, 12, start=10) == range(10, 12)


def test_a_message_past_the_next_expected_offset_reveals_the_skipped_ones() -> None:
    gaps = Gaps()
    for offset in (10, 11, 12):
        assert not gaps.missing("counts", 1, offset)
        gaps.done("counts", 1, offset)
    assert gaps.missing("counts", 1, 13) == range(0)
    assert gaps.missing("counts", 1, 16) == range(13, 16)
    # A repeat after a rebalance (read again from the committed offset) is no gap.
    assert not gaps.missing("counts", 1, 11)
    assert gaps.repeat("counts", 1, 11) and not gaps.repeat("counts", 1, 13)


def test_partitions_given_up_are_forgotten() -> None:
    gaps = Gaps()
    gaps.done("counts", 1, 12)
    gaps.done("counts", 2, 30)
    gaps.keep({("counts", 2)})
    assert not gaps.missing("counts", 1, 40) and not gaps.repeat("counts", 1, 5)
    assert gaps.missing("counts", 2, 33) == range(31, 33)
