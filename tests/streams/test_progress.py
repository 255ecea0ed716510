"""What the enrich side knows of each packets partition (streams.progress), with a clock of
the test's own."""

from __future__ import annotations

from streams.progress import CountBacklog, PacketsProgress


def _progress(now: list[float]) -> PacketsProgress:
    return PacketsProgress(idle_after=3.0, refresh=30.0, clock=lambda: now[0])


def test_watermark_is_the_newest_packet_and_never_goes_back() -> None:
    now = [0.0]
    p = _progress(now)
    assert p.batch(0, 0, 500) == 500
    assert p.batch(0, 1, 300) == 500  # an older batch does not lower it
    assert p.batch(0, 2, None) == 500  # an empty batch neither
    assert p.batch(1, 0, 100) == 100


def test_a_partition_is_reported_idle_once_caught_up_and_quiet_then_every_refresh() -> None:
    now = [0.0]
    p = _progress(now)
    p.batch(0, 9, 1)
    now[0] = 2.0
    assert not p.idle_due(0, p.caught_up(0, 10, None))  # quiet for 2 s only
    now[0] = 3.5
    assert not p.idle_due(0, p.caught_up(0, 11, None))  # a message not processed yet
    assert p.idle_due(0, p.caught_up(0, 10, None))
    now[0] = 20.0
    assert not p.idle_due(0, True)  # reported already
    now[0] = 34.0
    assert p.idle_due(0, True)  # the refresh, for a worker that took a counts partition over
    p.batch(0, 10, 2)  # data again: reported anew once it falls quiet
    now[0] = 37.5
    assert p.idle_due(0, p.caught_up(0, 11, None))


def test_a_partition_not_processed_here_is_caught_up_only_by_the_committed_offset() -> None:
    """The fetch position runs ahead of processing (messages wait in the stream's buffer):
    only the group's committed offset says the messages were processed."""
    p = _progress([100.0])
    assert p.caught_up(3, 0, None)  # nothing was ever written to it
    assert not p.caught_up(3, 40, None)
    assert not p.caught_up(3, 40, 39)
    assert p.caught_up(3, 40, 40)


def test_what_was_processed_survives_a_rebalance_and_idle_reports_start_again() -> None:
    now = [0.0]
    p = _progress(now)
    p.batch(2, 7, 1)
    now[0] = 5.0
    assert p.idle_due(2, p.caught_up(2, 8, None))
    p.reassigned()
    assert p.caught_up(2, 8, None) and not p.caught_up(2, 9, None)
    assert p.idle_due(2, True)  # told again to whoever owns the counts partitions now


def test_count_backlog_is_the_batches_enriched_and_not_yet_counted_on_the_slowest_partition() -> None:
    b = CountBacklog(limit=4)
    assert b.behind() == 0 and not b.too_far()  # nothing owned yet
    for offset in range(10, 16):  # packets partition 0: batches 10..15 enriched here
        b.was_enriched(0, offset)
    b.was_enriched(1, 7)
    # Counts partitions 0 and 1 are owned here once they count something.
    b.was_counted(0, 0, 13)
    b.was_counted(0, 1, 7)
    assert b.behind() == 2  # 14 and 15 of partition 0
    b.was_counted(1, 0, 10)
    # Counts partition 1: 11..15 of packets partition 0, and batch 7 of partition 1 (never
    # counted there: everything since the first batch enriched here is behind).
    assert b.behind() == 6 and b.too_far()
    b.was_counted(1, 1, 7)
    b.was_counted(1, 0, 15)
    assert b.behind() == 2 and not b.too_far()
    # A counts partition and a packets partition moved away: no longer measured.
    b.forget({1}, {0})
    assert b.behind() == 0


def test_silence_while_the_broker_was_out_of_sight_is_no_idleness() -> None:
    now = [0.0]
    p = _progress(now)
    p.batch(0, 9, 1)
    now[0] = 1.0
    assert p.looked(blind_after=5.0)
    # The broker is down for 20 s: the check cannot run (or blocks) all that time.
    now[0] = 21.0
    assert not p.looked(blind_after=5.0)
    # Caught up and 20 s since the last batch, but the sensor's held batches may still come.
    assert not p.idle_due(0, True)
    now[0] = 23.0
    assert p.looked(blind_after=5.0) and not p.idle_due(0, True)
    now[0] = 24.5  # idle_after (3 s) of silence with the broker in sight
    assert p.looked(blind_after=5.0) and p.idle_due(0, True)


def test_a_partition_never_seen_waits_idle_after_from_the_broker_coming_back() -> None:
    now = [0.0]
    p = _progress(now)
    now[0] = 30.0
    assert not p.looked(blind_after=5.0)
    assert not p.idle_due(2, True)
    now[0] = 33.0
    assert p.looked(blind_after=5.0)
    now[0] = 33.5
    assert p.looked(blind_after=5.0) and p.idle_due(2, True)
