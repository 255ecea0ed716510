"""Transport headers of decoded packets, filled into batch columns for many packets at once.

TCP (ports, seq, ack, flags, window, and the options walked for every packet at once: kinds
in wire order packed from the most significant byte, MSS, window scale), UDP ports, ICMP and
ICMPv6 type and code, and the datagram an ICMP / ICMPv6 error quotes (IPv4 or IPv6
addresses). Only unfragmented packets and first fragments are read. What a short snaplen cut
off is left 0 and marked in ``truncated`` (see :mod:`producers.decode` for the rules); the
rows with problems are returned as data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from producers.frames import IntArray, Reason, be16, be32, u8

__all__ = ["TRUNC_L4", "TRUNC_QUOTE", "TRUNC_TCP_OPTIONS", "Sel", "fill_transport", "put", "tcp_options"]

# Bits of the ``truncated`` column: which header fields the snaplen cut off.
TRUNC_L4, TRUNC_TCP_OPTIONS, TRUNC_QUOTE = 1, 2, 4

Array = npt.NDArray[Any]
Sel = slice | IntArray  # all rows, or an index array


def _table(*values: int) -> npt.NDArray[np.bool_]:
    """A 256-entry lookup table: ``table[byte_array]`` is a fast ``isin`` for byte values."""
    table = np.zeros(256, dtype=bool)
    table[list(values)] = True
    return table


_ICMP4_ERRORS = _table(3, 4, 5, 11, 12)
_ICMP6_ERRORS = _table(1, 2, 3, 4)


def put(cols: dict[str, Array], name: str, sel: Sel, values: Array) -> None:
    """``cols[name][sel] = values``, taking ``values`` as the column when it is the whole column."""
    col = cols[name]
    if isinstance(sel, slice) and values.dtype == col.dtype and values.shape == col.shape:
        cols[name] = values
    else:
        col[sel] = values


@dataclass
class _Rows:
    """Output rows of one protocol and how many L4 bytes each has (``least`` of them all)."""

    idx: IntArray
    sel: Sel  # ``idx``, or all rows when ``idx`` covers the batch
    room: IntArray
    least: int


def _field(cols: dict[str, Array], name: str, rows: _Rows, values: Array, need: int) -> None:
    """Set a column where the field's ``need`` bytes (from the L4 start) were captured."""
    if rows.least >= need:
        put(cols, name, rows.sel, values)
    else:
        full = rows.room >= need
        cols[name][rows.idx[full]] = values[full]


def fill_transport(
    data: Array, l4: IntArray, end: IntArray, cols: dict[str, Array]
) -> dict[Reason, IntArray]:
    """Fill the TCP/UDP/ICMP columns from the L4 offsets ``l4``; return the rows with L4 problems."""
    proto = cols["protocol"]
    first = cols["frag_offset"] == 0
    # The capture ended before the packet did: a field not captured was cut by the snaplen
    # (a packet that is itself too short is malformed, not truncated).
    cut = cols["caplen"] < cols["total_length"]
    problems: dict[Reason, list[IntArray]] = {Reason.TRUNCATED_L4: [], Reason.BAD_L4_HEADER: []}
    for number, header in ((6, 20), (17, 8), (1, 8), (58, 8)):
        idx = np.flatnonzero(first & (proto == number))
        if len(idx) == 0:
            continue
        b = l4[idx]
        room = end[idx] - b
        rows = _Rows(idx, slice(None) if len(idx) == len(proto) else idx, room, int(room.min()))
        if rows.least < header:
            problems[Reason.TRUNCATED_L4].append(idx[room < header])
            cols["truncated"][idx[(room < header) & cut[idx]]] |= np.uint8(TRUNC_L4)
        if number in (6, 17):
            _field(cols, "sport", rows, be16(data, b), 4)  # ports go together
            _field(cols, "dport", rows, be16(data, b + 2), 4)
        if number == 6:
            _tcp(data, rows, b, cols, problems, cut[idx])
        elif number in (1, 58):
            _field(cols, "icmp_type", rows, u8(data, b), 1)
            _field(cols, "icmp_code", rows, u8(data, b + 1), 2)
            _icmp_inner(data, idx, b + 8, end[idx], cols, number, cut[idx])
    return {r: np.concatenate(v) for r, v in problems.items() if v and sum(len(x) for x in v)}


def _tcp(
    data: Array,
    rows: _Rows,
    b: IntArray,
    cols: dict[str, Array],
    problems: dict[Reason, list[IntArray]],
    cut: npt.NDArray[np.bool_],
) -> None:
    _field(cols, "tcp_seq", rows, be32(data, b + 4), 8)
    _field(cols, "tcp_ack", rows, be32(data, b + 8), 12)
    _field(cols, "tcp_flags", rows, u8(data, b + 13), 14)
    _field(cols, "tcp_window", rows, be16(data, b + 14), 16)
    hlen = (u8(data, b + 12) >> 4).astype(np.int64) * 4
    room = rows.room
    has_off = room >= 13
    bad = has_off & (hlen < 20)
    if bad.any():
        problems[Reason.BAD_L4_HEADER].append(rows.idx[bad])
    # Options cut: the data offset says more than was captured, or was not captured itself.
    opts_cut = cut & (~has_off | ((hlen > 20) & (room < hlen)))
    cols["truncated"][rows.idx[opts_cut]] |= np.uint8(TRUNC_TCP_OPTIONS)
    with_opts = np.flatnonzero(has_off & (hlen > 20))
    if len(with_opts) == 0:
        return
    r, ob, oh, oroom = rows.idx[with_opts], b[with_opts], hlen[with_opts], room[with_opts]
    cols["tcp_opt_len"][r] = oh - 20
    stop = np.minimum(ob + oh, ob + oroom)
    problems[Reason.TRUNCATED_L4].append(r[(oh > oroom) & (oroom >= 20)])
    # Fast path for the commonest form (Nmap and Masscan SYNs, most SYN-ACKs): one MSS option.
    mss_only = (oh == 24) & (oroom >= 24) & (be16(data, ob + 20) == 0x0204)
    if mss_only.any():
        cols["tcp_opt_kinds"][r[mss_only]] = np.uint64(2 << 56)
        cols["tcp_mss"][r[mss_only]] = be16(data, ob[mss_only] + 22)
        walk = np.flatnonzero(~mss_only)
        r, ob, stop = r[walk], ob[walk], stop[walk]
    kinds, mss, wscale, broken = tcp_options(data, ob + 20, stop)
    cols["tcp_opt_kinds"][r] = kinds
    cols["tcp_mss"][r] = mss
    cols["tcp_wscale"][r] = wscale
    problems[Reason.BAD_L4_HEADER].append(r[broken])


def tcp_options(data: Array, start: IntArray, stop: IntArray) -> tuple[Array, Array, Array, Array]:
    """Walk TCP options in ``data[start:stop]`` for many packets at once.

    Returns per packet: kinds (wire order, first in the most significant byte, up to 8; EOL
    ends the walk and is not recorded), MSS (0 absent), window scale (255 absent), and whether
    an option had an impossible length.
    """
    n = len(start)
    kinds = np.zeros(n, dtype=np.uint64)
    mss = np.zeros(n, dtype=np.uint16)
    wscale = np.full(n, 255, dtype=np.uint8)
    broken = np.zeros(n, dtype=bool)
    act = np.flatnonzero(start < stop)
    pos = start[act]
    count = np.zeros(len(act), dtype=np.uint64)
    for _ in range(40):  # 40 option bytes at most, each option takes at least one
        if len(act) == 0:
            break
        k = u8(data, pos)
        slot = count < 8
        kinds[act[slot]] |= k[slot].astype(np.uint64) << (np.uint64(56) - np.uint64(8) * count[slot])
        count += 1
        length = np.where(k <= 1, 1, u8(data, pos + 1).astype(np.int64))
        end_here = stop[act]
        bad = (k > 1) & ((pos + 2 > end_here) | (length < 2) | (pos + length > end_here))
        broken[act[bad]] = True
        is_mss = (k == 2) & (length == 4) & ~bad
        if is_mss.any():
            mss[act[is_mss]] = be16(data, pos[is_mss] + 2)
        is_ws = (k == 3) & (length == 3) & ~bad
        if is_ws.any():
            wscale[act[is_ws]] = u8(data, pos[is_ws] + 2)
        pos = pos + length
        go = (k != 0) & ~bad & (pos < end_here)
        act, pos, count = act[go], pos[go], count[go]
    # an EOL (kind 0) was recorded as a zero byte, which is what an empty slot holds anyway
    return kinds, mss, wscale, broken


def _icmp_inner(
    data: Array,
    rows: IntArray,
    ib: IntArray,
    end: IntArray,
    cols: dict[str, Array],
    number: int,
    cut: npt.NDArray[np.bool_],
) -> None:
    """Quoted datagram of ICMP / ICMPv6 errors: inner protocol, addresses and ports."""
    errors = _ICMP4_ERRORS if number == 1 else _ICMP6_ERRORS
    is_error = errors[cols["icmp_type"][rows]]
    _mark_quote(data, rows[is_error & cut], ib[is_error & cut], end[is_error & cut], cols, number)
    sel = np.flatnonzero(is_error & (ib < end))
    want = 4 if number == 1 else 6
    sel = sel[u8(data, ib[sel]) >> 4 == want]
    if len(sel) == 0:
        return
    r, a, room = rows[sel], ib[sel], end[sel] - ib[sel]
    quote = _Rows(r, r, room, int(room.min()))
    if number == 1:
        _field(cols, "inner_protocol", quote, u8(data, a + 9), 10)
        _field(cols, "inner_src", quote, be32(data, a + 12), 16)
        _field(cols, "inner_dst", quote, be32(data, a + 16), 20)
        ihl = (u8(data, a) & 15).astype(np.int64) * 4
        ports_at = a + ihl
        first = (room >= 8) & (ihl >= 20) & (be16(data, a + 6) & 0x1FFF == 0)
    else:
        _field(cols, "inner_protocol", quote, u8(data, a + 6), 7)
        span = np.arange(16)
        for name, at in (("inner_src6", 8), ("inner_dst6", 24)):
            addr = data.take(a[:, None] + (at + span), mode="clip").view("V16")[:, 0]
            _field(cols, name, quote, addr, at + 16)
        ports_at = a + 40
        first = np.ones(len(r), dtype=bool)
    inner = cols["inner_protocol"][r]
    has_ports = np.flatnonzero(first & ((inner == 6) | (inner == 17)))
    if len(has_ports) == 0:
        return
    r, ports_at = r[has_ports], ports_at[has_ports]
    room = (a + room)[has_ports] - ports_at
    ports = _Rows(r, r, room, int(room.min()))
    _field(cols, "inner_sport", ports, be16(data, ports_at), 4)
    _field(cols, "inner_dport", ports, be16(data, ports_at + 2), 4)


def _mark_quote(
    data: Array, rows: IntArray, ib: IntArray, end: IntArray, cols: dict[str, Array], number: int
) -> None:
    """Mark the ICMP errors (of packets the snaplen cut) whose quoted header, or the ports of a
    quoted TCP/UDP datagram, were not all captured."""
    if len(rows) == 0:
        return
    room = end - ib
    if number == 1:
        hdr = np.where(room >= 1, (u8(data, ib) & 15).astype(np.int64) * 4, 20)
        inner = np.where(room >= 10, u8(data, ib + 9), 0)
        unfragmented = (room < 8) | (be16(data, ib + 6) & 0x1FFF == 0)
    else:
        hdr = np.full(len(rows), 40, dtype=np.int64)
        inner = np.where(room >= 7, u8(data, ib + 6), 0)
        unfragmented = np.ones(len(rows), dtype=bool)
    ports = ((inner == 6) | (inner == 17)) & unfragmented
    lost = (room < np.maximum(hdr, 20)) | (ports & (room < hdr + 4))
    cols["truncated"][rows[lost]] |= np.uint8(TRUNC_QUOTE)
