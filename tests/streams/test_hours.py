"""Hour windows in columns (streams.hours): packets per (hour, value) and sparse HyperLogLogs
that estimate exactly what a dense one does."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.hours import Hours
from streams.sketch import HLL_P, hll_estimate, hll_update

T0 = 1_648_771_200  # 2022-04-01T00:00:00Z


@given(
    st.lists(st.lists(st.integers(0, 2**40), max_size=3000), min_size=1, max_size=4),
    st.integers(1, 3),
    st.integers(1, 3),
)
@settings(max_examples=40, deadline=None)
def test_sparse_hour_sketches_estimate_what_a_dense_hyperloglog_does(
    chunks: list[list[int]], nvalues: int, nhours: int
) -> None:
    """Every (hour, value)'s sparse register -> rank sketch gives the dense HLL's estimate,
    closed in one pass over several hours; packets add up per (hour, value)."""
    hours = Hours()
    dense = np.zeros((nhours, nvalues, 1 << HLL_P), np.uint8)
    packets = np.zeros((nhours, nvalues), np.int64)
    for i, chunk in enumerate(chunks):
        addrs = np.array(chunk, dtype=np.uint64)
        vids = (
            (np.arange(len(addrs)) % nvalues).astype(np.uint32) if i % 2 else np.zeros(len(addrs), np.uint32)
        )
        h = (np.arange(len(addrs)) % nhours).astype(np.int64)
        starts = T0 + h * 3600
        hours.add(starts, vids, np.ones(len(addrs), np.int64), starts, vids, addrs)
        np.add.at(packets, (h, vids), 1)
        for hour in range(nhours):
            for v in range(nvalues):
                hll_update(dense[hour, v], addrs[(vids == v) & (h == hour)])
    out_h, out_v, out_n, out_s = hours.close(T0 + nhours * 3600)
    got = {(int(a), int(b)): (int(n), int(e)) for a, b, n, e in zip(out_h, out_v, out_n, out_s, strict=True)}
    want = {
        (T0 + hour * 3600, v): (int(packets[hour, v]), hll_estimate(dense[hour, v]))
        for hour in range(nhours)
        for v in range(nvalues)
        if packets[hour, v]
    }
    assert got == want
    assert not hours.open


def test_a_reopened_hour_takes_back_a_minute_and_closes_again() -> None:
    hours = Hours()
    one = np.ones(2, np.int64)
    v = np.zeros(2, np.uint32)
    hours.add(np.full(2, T0), v, one, np.full(2, T0), v, np.array([1, 2], np.uint64))
    h, _, n, s = hours.close(T0 + 3600)
    assert (h.tolist(), n.tolist(), s.tolist()) == ([T0], [2], [2])
    hours.reopen(T0)
    # A minute of it is taken back and counted again with a late source added.
    hours.add(
        np.full(1, T0), v[:1], -np.ones(1, np.int64), np.zeros(0, np.int64), v[:0], np.zeros(0, np.uint64)
    )
    hours.add(np.full(1, T0), v[:1], np.full(1, 2), np.full(1, T0), v[:1], np.array([3], np.uint64))
    h, _, n, s = hours.close(T0 + 3600)
    assert (h.tolist(), n.tolist(), s.tolist()) == ([T0], [3], [3])


def test_rows_for_an_hour_closed_already_close_it_again_with_its_old_rows() -> None:
    """Found by hypothesis: a flush closed an hour whose later minutes were not late yet; a
    minute of it that came afterwards closed the hour again without the rows it had."""
    hours = Hours()
    v = np.zeros(1, np.uint32)
    hours.add(np.full(1, T0), v, np.ones(1, np.int64), np.full(1, T0), v, np.array([1], np.uint64))
    assert hours.close(T0 + 3600)[2].tolist() == [1]
    hours.add(np.full(1, T0), v, np.ones(1, np.int64), np.full(1, T0), v, np.array([2], np.uint64))
    h, _, n, s = hours.close(T0 + 3600)
    assert (h.tolist(), n.tolist(), s.tolist()) == ([T0], [2], [2])
