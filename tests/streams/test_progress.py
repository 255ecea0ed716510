"""What the enrich side knows of each packets partition (streams.progress), with a clock of
the test's own."""

from __future__ import annotations

from streams.progress import PacketsProgress


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
