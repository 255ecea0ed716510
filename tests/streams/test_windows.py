"""Event-time windows of one kind (streams.windows), watermarks (streams.watermark) and the
HyperLogLog sketch (streams.sketch)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.partials import Partial
from streams.combiner import aggregate as aggregate_shards
from streams.sketch import HLL_P, hll_estimate, hll_update
from streams.watermark import FLUSH, WatermarkTracker
from streams.windows import ClosedWindow, KindWindows, ValueIds


def aggregate(*args: object) -> Partial:
    """The partial of a single counts partition."""
    return aggregate_shards(*args)[0]  # type: ignore[arg-type]


T0 = 1_648_771_200  # 2022-04-01T00:00:00Z


def _rows(rng: np.random.Generator, n: int, span_s: int, nvalues: int, naddr: int) -> tuple:
    ts = (T0 + rng.integers(0, span_s, n)).astype(np.int64) * 10**9
    codes = rng.integers(0, nvalues, n).astype(np.int64)
    addrs = rng.integers(0, naddr, n).astype(np.uint64)
    return ts, codes, addrs


def test_partial_counts_packets_and_distinct_triples_per_minute() -> None:  # one partition
    ts = np.array([0, 10, 59, 60, 61, 61], dtype=np.int64) * 10**9 + T0 * 10**9
    p = aggregate(
        "port",
        ts,
        np.array([0, 0, 1, 1, 1, 1]),
        ["23/tcp", "80/tcp"],
        np.array([7, 7, 8, 9, 9, 9], dtype=np.uint64),
    )
    rows = {
        (int(m), p.values[int(v)]): int(n) for m, v, n in zip(p.minute, p.value_idx, p.packets, strict=True)
    }
    assert rows == {(T0, "23/tcp"): 2, (T0, "80/tcp"): 1, (T0 + 60, "80/tcp"): 3}
    triples = set(zip(p.pair_minute.tolist(), p.pair_value_idx.tolist(), p.pair_addr.tolist(), strict=True))
    assert triples == {(T0, 0, 7), (T0, 1, 8), (T0 + 60, 1, 9)}


@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(1, 5000), st.booleans(), st.booleans())
@settings(max_examples=60, deadline=None)
def test_sum_of_window_counts_equals_packets_accepted(
    seed: int, batches: int, n: int, wide_keys: bool, close_between: bool
) -> None:
    """Exact minute uniques and packet totals, with IPv4 or IPv6-hash source keys, and with
    watermarks that close windows between batches (later rows then reopen them)."""
    rng = np.random.default_rng(seed)
    windows = KindWindows("port")
    exact: dict[tuple[int, int], set[int]] = {}
    total = 0
    latest: dict[tuple[str, int], ClosedWindow] = {}
    for i in range(batches):
        ts, codes, addrs = _rows(rng, n, 3 * 3600, 7, 300)
        if wide_keys:
            addrs |= np.uint64(1 << 63)
        windows.add(aggregate("port", ts, codes, [f"v{i}" for i in range(7)], addrs))
        total += n
        for t, c, a in zip((ts // 10**9 // 60 * 60).tolist(), codes.tolist(), addrs.tolist(), strict=True):
            exact.setdefault((t, c), set()).add(a)
        if close_between:
            for w in windows.close_until(T0 + (i + 1) * 3 * 3600 // (batches + 1)).windows():
                latest[(w.size, w.start)] = w
    for w in windows.flush().windows():
        latest[(w.size, w.start)] = w
    minutes = [w for w in latest.values() if w.size == "1m"]
    hours = [w for w in latest.values() if w.size == "1h"]
    assert sum(p for w in minutes for p, _ in w.counts.values()) == total
    assert sum(p for w in hours for p, _ in w.counts.values()) == total
    for w in minutes:  # unique sources per minute are exact
        for value, (_, sources) in w.counts.items():
            assert sources == len(exact[(w.start, int(value[1:]))])


def test_late_rows_reopen_their_window_and_correct_it() -> None:
    windows = KindWindows("region")
    ts = np.array([T0, T0 + 30], dtype=np.int64) * 10**9
    windows.add(aggregate("region", ts, np.zeros(2, np.int64), ["JP"], np.arange(2, dtype=np.uint64)))
    closed = windows.close_until(T0 + 120).windows()
    assert [(w.size, w.counts) for w in closed] == [("1m", {"JP": (2, 2)})]
    late = np.array([T0 + 5, T0 + 6], dtype=np.int64) * 10**9
    windows.add(aggregate("region", late, np.zeros(2, np.int64), ["JP"], np.array([1, 7], dtype=np.uint64)))
    assert windows.late_packets == 0
    again = windows.close_until(T0 + 3700).windows()
    # The minute is closed again with the corrected counts (the merge stage numbers the
    # revision); the hour counts each packet once.
    assert [(w.size, w.counts) for w in again] == [("1m", {"JP": (4, 3)}), ("1h", {"JP": (4, 3)})]


def test_rows_older_than_the_retention_are_dropped_as_late() -> None:
    windows = KindWindows("region", retention_s=600)
    ts = np.array([T0, T0 + 3000], dtype=np.int64) * 10**9
    windows.add(aggregate("region", ts, np.zeros(2, np.int64), ["JP"], np.arange(2, dtype=np.uint64)))
    windows.close_until(T0 + 3600)
    windows.add(aggregate("region", ts[:1], np.zeros(1, np.int64), ["JP"], np.zeros(1, np.uint64)))
    assert windows.late_packets == 1


def test_hour_window_estimates_sources_within_five_percent() -> None:
    rng = np.random.default_rng(3)
    windows = KindWindows("region")
    ts, _, addrs = _rows(rng, 200_000, 3600, 1, 2**40)
    windows.add(aggregate("region", ts, np.zeros(len(ts), np.int64), ["CN"], addrs))
    hour = next(w for w in windows.flush().windows() if w.size == "1h")
    packets, sources = hour.counts["CN"]
    truth = len(np.unique(addrs))
    assert packets == 200_000
    assert abs(sources - truth) / truth < 0.05


def test_hll_small_and_large_cardinalities() -> None:
    for n in (1, 50, 5_000, 300_000):
        regs = np.zeros(1 << HLL_P, np.uint8)
        hll_update(regs, np.arange(n, dtype=np.uint64) * 2654435761)
        assert abs(hll_estimate(regs) - n) <= max(2, 0.05 * n)


def test_watermark_is_the_slowest_partition_minus_lateness() -> None:
    wm = WatermarkTracker(partitions=2, lateness_s=60)
    wm.update(0, (T0 + 600) * 10**9)
    assert wm.current_s() is None  # partition 1 has not spoken yet
    wm.update(1, (T0 + 300) * 10**9)
    assert wm.current_s() == T0 + 240
    wm.update(0, (T0 + 900) * 10**9)
    wm.set_idle(1)  # caught up and silent: no longer holds partition 0 back
    assert wm.current_s() == T0 + 840
    wm.set_idle(0)  # everything idle: the replay has ended, close all
    assert wm.current_s() == FLUSH
    wm.update(1, (T0 + 1200) * 10**9)  # data again: partition 1 is active
    assert wm.current_s() == T0 + 1140


def test_idle_marker_counts_as_a_partition_having_spoken() -> None:
    wm = WatermarkTracker(partitions=2, lateness_s=0)
    wm.update(0, (T0 + 100) * 10**9)
    wm.set_idle(1)  # a partition with no data at all
    assert wm.current_s() == T0 + 100


def test_watermark_ignores_a_partition_going_backwards() -> None:
    wm = WatermarkTracker(partitions=1, lateness_s=0)
    wm.update(0, (T0 + 100) * 10**9)
    wm.update(0, (T0 + 50) * 10**9)
    assert wm.current_s() == T0 + 100


def test_flush_closes_everything_but_later_data_still_counts() -> None:
    windows = KindWindows("sensor")
    ts = np.array([T0 + 10, T0 + 4000], dtype=np.int64) * 10**9
    windows.add(aggregate("sensor", ts, np.zeros(2, np.int64), ["s"], np.arange(2, dtype=np.uint64)))
    closed = windows.close_until(FLUSH).windows()
    assert sorted((w.size, w.start) for w in closed) == [
        ("1h", T0),
        ("1h", T0 + 3600),
        ("1m", T0),
        ("1m", T0 + 3960),
    ]
    later = np.array([T0 + 8000], dtype=np.int64) * 10**9
    windows.add(aggregate("sensor", later, np.zeros(1, np.int64), ["s"], np.zeros(1, np.uint64)))
    assert windows.late_packets == 0
    assert sum(p for w in windows.flush().windows() for p, _ in w.counts.values() if w.size == "1m") == 1


def test_a_partition_that_never_had_data_holds_the_others_back_until_it_has() -> None:
    wm = WatermarkTracker(partitions=2, lateness_s=0)
    wm.update(0, (T0 + 600) * 10**9)
    wm.set_idle(1, empty=True)  # a replay has not reached it yet
    assert wm.current_s() is None
    wm.update(1, (T0 + 100) * 10**9)  # its data comes: the oldest
    assert wm.current_s() == T0 + 100
    wm.set_idle(1, empty=True)  # it had data: a plain idle partition now
    assert wm.current_s() == T0 + 600
    wm.set_idle(0)
    assert wm.current_s() == FLUSH


def test_every_partition_idle_flushes_even_if_one_never_had_data() -> None:
    wm = WatermarkTracker(partitions=2, lateness_s=0)
    wm.update(0, (T0 + 600) * 10**9)
    wm.set_idle(1, empty=True)
    wm.set_idle(0)
    assert wm.current_s() == FLUSH


@contextmanager
def _dictionary_floor(n: int) -> Iterator[None]:
    """Dictionaries compacted from ``n`` values on (the default floor is in the thousands)."""
    before = ValueIds.FLOOR
    ValueIds.FLOOR = n
    try:
        yield
    finally:
        ValueIds.FLOOR = before


def _new_values_every_hour(
    floor: int, seed: int, late_s: int
) -> tuple[dict[tuple[str, int], Any], KindWindows]:
    """Thirty hours of a kind whose values change every hour (victims, say), each batch with
    rows up to ``late_s`` back (reopening closed minutes and hours), closed batch by batch."""
    rng = np.random.default_rng(seed)
    latest: dict[tuple[str, int], Any] = {}
    with _dictionary_floor(floor):
        windows = KindWindows("victim", retention_s=2 * 3600)
        for i in range(120):  # a batch every 15 minutes
            now = T0 + i * 900
            ts = now + rng.integers(-late_s, 900, 400)
            hour = (ts - T0) // 3600
            k = rng.integers(0, 6, 400)
            values = sorted({f"{h}/{v}" for h, v in zip(hour.tolist(), k.tolist(), strict=True)})
            index = {v: j for j, v in enumerate(values)}
            codes = np.array([index[f"{h}/{v}"] for h, v in zip(hour.tolist(), k.tolist(), strict=True)])
            addrs = rng.integers(0, 50, 400).astype(np.uint64)
            windows.add(aggregate("victim", ts.astype(np.int64) * 10**9, codes, values, addrs))
            for w in windows.close_until(now + 900 - 60).windows():
                latest[(w.size, w.start)] = w.counts
        for w in windows.flush().windows():
            latest[(w.size, w.start)] = w.counts
    return latest, windows


@given(st.integers(0, 2**32 - 1), st.sampled_from([0, 600, 4000]))
@settings(max_examples=15, deadline=None)
def test_a_dictionary_that_lets_go_of_old_values_closes_the_same_windows(seed: int, late_s: int) -> None:
    """The dictionary keeps the values of the windows it may still close or reopen: every
    window closes with the same counts as with a dictionary that keeps every value, and the
    dictionary stays near what two hours of retention use instead of thirty hours' values."""
    kept, compacted = _new_values_every_hour(8, seed, late_s)
    every, whole = _new_values_every_hour(10**9, seed, late_s)
    assert kept == every
    assert compacted.compactions > 0 and whole.compactions == 0
    assert len(whole.values) >= 30 * 6 - 6
    assert len(compacted.values) <= 2 * 6 * 5  # at most twice the values of 4 to 5 hours
    assert compacted.late_packets == whole.late_packets
