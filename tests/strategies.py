"""Hypothesis strategies for packet batches that cover every column's full range."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from schemas.batch import PacketBatch, column_dtypes


@st.composite
def packet_batches(draw: st.DrawFn, max_rows: int = 64) -> PacketBatch:
    """Random batches: any values in every column, IPv4 and IPv6 rows mixed."""
    n = draw(st.integers(0, max_rows))
    cols: dict[str, Any] = {}
    for name, dt in column_dtypes().items():
        if dt.kind == "V":
            raw = draw(st.binary(min_size=16 * n, max_size=16 * n))
            cols[name] = np.frombuffer(raw, dtype=dt).copy()
        else:
            cols[name] = draw(hnp.arrays(dt, n))
    cols["ip_version"] = draw(hnp.arrays(np.dtype("u1"), n, elements=st.sampled_from([4, 6])))
    v4 = cols["ip_version"] == 4
    # An IPv4 row has no IPv6 address and vice versa: that is what sensors produce.
    for a in ("src6", "dst6", "inner_src6", "inner_dst6"):
        cols[a][v4] = np.zeros(1, dtype=cols[a].dtype)[0] if n else cols[a][v4]
    for a in ("src", "dst"):
        cols[a][~v4] = 0
    sensor = draw(st.text(max_size=20))
    seq = draw(st.integers(0, 2**63 - 1))
    return PacketBatch(sensor, seq, cols)
