"""producers.transport: the TCP option walker and the column setter, on their own."""

from __future__ import annotations

import numpy as np

from producers.transport import put, tcp_options
from tests.producers.pktbuild import ZMAP_KINDS, ZMAP_OPTIONS


def test_tcp_options_walks_many_packets_at_once() -> None:
    data = np.frombuffer(ZMAP_OPTIONS + bytes.fromhex("01010101") + bytes.fromhex("0303"), dtype=np.uint8)
    start = np.array([0, 12, 16], dtype=np.int64)
    stop = np.array([12, 16, 18], dtype=np.int64)
    kinds, mss, ws, broken = tcp_options(data, start, stop)
    assert kinds.tolist() == [ZMAP_KINDS, 0x0101010100000000, 0x0300000000000000]
    assert mss.tolist() == [1460, 0, 0] and ws.tolist() == [8, 255, 255]
    assert broken.tolist() == [False, False, True]


def test_tcp_options_with_nothing_to_walk_are_empty() -> None:
    data = np.zeros(8, dtype=np.uint8)
    kinds, mss, ws, broken = tcp_options(data, np.array([4], dtype=np.int64), np.array([4], dtype=np.int64))
    assert kinds.tolist() == [0] and mss.tolist() == [0] and ws.tolist() == [255] and not broken[0]


def test_forty_nops_are_walked_to_the_end() -> None:
    data = np.frombuffer(bytes([1] * 36) + bytes.fromhex("020405b4"), dtype=np.uint8)
    kinds, mss, _, broken = tcp_options(data, np.array([0], dtype=np.int64), np.array([40], dtype=np.int64))
    assert int(kinds[0]) == 0x0101010101010101 and mss[0] == 1460 and not broken[0]


def test_put_takes_a_whole_column_and_scatters_a_part() -> None:
    cols = {"x": np.zeros(3, dtype=np.uint16)}
    whole = np.array([1, 2, 3], dtype=np.uint16)
    put(cols, "x", slice(None), whole)
    assert cols["x"] is whole
    put(cols, "x", np.array([0, 2]), np.array([7, 9], dtype=np.uint16))
    assert cols["x"].tolist() == [7, 2, 9]
