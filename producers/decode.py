"""Captured frames -> columnar ``PacketBatch``, vectorised with NumPy (no per-packet Python).

Every header field is gathered for all frames at once from the capture buffer
(:mod:`producers.frames`), one layer at a time:

- link layer: Ethernet (1) with up to two 802.1Q / 802.1ad tags, raw IP (101, and 12 / 14 as
  some platforms number DLT_RAW; 228 IPv4, 229 IPv6), Linux cooked SLL (113) and SLL2 (276),
  BSD loopback NULL (0, family in the writer's byte order, detected per frame) and LOOP (108,
  network order). Other link types count ``unknown_linktype``; frames of other ethertypes
  or families (ARP, LLC, MPLS ...) are not packets and count ``not_ip``.
- IPv4 with options; IPv6 with hop-by-hop, routing, fragment and destination-options
  extension headers skipped (the fragment header gives frag offset, M flag and the low 16
  bits of the id). Only unfragmented packets and first fragments have L4 fields.
- TCP (ports, seq, ack, flags, window, and the options walked for every packet at once:
  kinds in wire order packed from the most significant byte, MSS, window scale), UDP ports,
  ICMP and ICMPv6 type and code (:mod:`producers.transport`); for ICMP errors (types 3, 4,
  5, 11, 12) the quoted IPv4 header gives inner protocol, addresses and ports; for ICMPv6
  errors (types 1-4) the quoted IPv6 header gives inner protocol, addresses (``inner_src6``,
  ``inner_dst6``) and ports.
- Lengths: ``total_length`` is 32-bit (an IPv6 jumbogram, payload length 0 and a Jumbo
  Payload option in its hop-by-hop header, RFC 2675, gets the option's length + 40);
  ``length`` is the same clipped to 16 bits for readers of PacketBatch version 1. The IPv4
  reserved flag is ``ip_reserved``; ``ip_flags`` holds DF and MF only.

Short snaplens. A frame whose captured bytes end inside the link header is dropped
(``truncated_link``), inside the IPv4/IPv6 header or its extension headers dropped too
(``truncated_ip``): without the addresses it is no use. A packet whose TCP/UDP/ICMP header is
cut short is still emitted and counted ``truncated_l4``; each L4 field is filled only when
all its bytes were captured (the two ports together need 4 bytes, seq 8, ack 12, flags 14,
window 16; ICMP type 1, code 2) and is 0 otherwise (``tcp_wscale`` 255). TCP options cut
short count ``truncated_l4`` too and keep the options read before the cut. ``caplen`` is what
was captured from the IP header on; where it ends before the packet does (the snaplen cut it)
and a field was lost, ``truncated`` says which (1 the L4 header, 2 TCP options, 4 an ICMP
error's quote), so a reader never takes a field it could not read for a real 0. A TCP data offset
below 5 or an option with a bad length counts ``bad_l4_header`` (emitted, options as far as
they were readable). An ICMP error quoting a short datagram is normal and not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from producers.frames import Frames, IntArray, Reason, be16, be32, le32, u8
from producers.transport import Sel, fill_transport, put
from schemas.batch import PacketBatch, column_dtypes

__all__ = ["DecodeResult", "LINKTYPES", "decode"]

Array = npt.NDArray[Any]

LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_LOOP = 0, 1, 108
LINKTYPE_RAW = (101, 12, 14)  # LINKTYPE_RAW, and DLT_RAW's number on the BSDs / OpenBSD
LINKTYPE_IPV4, LINKTYPE_IPV6 = 228, 229
LINKTYPE_SLL, LINKTYPE_SLL2 = 113, 276
LINKTYPES = frozenset(
    {
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_LOOP,
        *LINKTYPE_RAW,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_SLL,
        LINKTYPE_SLL2,
    }
)
_AF_INET6 = (10, 23, 24, 28, 30)  # Linux, Windows, NetBSD/OpenBSD, FreeBSD, macOS


_IPV6_EXT = np.zeros(256, dtype=bool)  # hop-by-hop, routing, fragment, destination options
_IPV6_EXT[[0, 43, 44, 60]] = True

# Per-frame drop codes while decoding (0 = kept), each standing for one of the DROP_REASONS.
_UNKNOWN_LT, _TRUNC_LINK, _NOT_IP, _BAD_IP, _TRUNC_IP = 1, 2, 3, 4, 5
_CODES: dict[int, Reason] = {
    _UNKNOWN_LT: Reason.UNKNOWN_LINKTYPE,
    _TRUNC_LINK: Reason.TRUNCATED_LINK,
    _NOT_IP: Reason.NOT_IP,
    _BAD_IP: Reason.BAD_IP_HEADER,
    _TRUNC_IP: Reason.TRUNCATED_IP,
}


@dataclass(frozen=True, eq=False)
class DecodeResult:
    """The packets of some frames, and which frames had which problem (indices into the frames)."""

    batch: PacketBatch
    problems: dict[Reason, IntArray]


def decode(frames: Frames, sensor_id: str = "", batch_seq: int = 0) -> DecodeResult:
    """Parse the headers of ``frames`` into a batch of IP packets (see the module docstring)."""
    data = frames.data
    start = frames.data_off
    end = start + frames.caplen
    l3, ver, why = _link_layer(data, frames.linktype, start, end)
    v6 = _ip_check(data, l3, end, ver, why)

    keep = why == 0
    dropped = not bool(keep.all())
    kidx: Sel = np.flatnonzero(keep) if dropped else slice(None)
    n = int(keep.sum())
    cols = {name: np.zeros(n, dtype=dt) for name, dt in column_dtypes().items()}
    cols["tcp_wscale"][:] = 255
    cols["ts"][:] = frames.ts[kidx]
    a3, e = l3[kidx], end[kidx]
    verk = ver[kidx]
    cols["ip_version"][:] = verk
    l4 = np.zeros(n, dtype=np.int64)
    _ipv4(data, a3, verk, cols, l4)
    _ipv6(data, v6, keep, a3, verk, cols, l4)
    cols["length"][:] = np.minimum(cols["total_length"], 0xFFFF)
    cols["caplen"][:] = np.maximum(e - a3, 0)

    problems: dict[Reason, list[IntArray]] = {}
    if dropped:
        for code in np.unique(why[why != 0]):
            problems.setdefault(_CODES[int(code)], []).append(np.flatnonzero(why == code))
    out_to_frame = np.arange(len(frames))[kidx]
    for reason, rows in fill_transport(data, l4, e, cols).items():
        problems.setdefault(reason, []).append(out_to_frame[rows])
    merged = {r: np.sort(np.concatenate(parts)) for r, parts in problems.items()}
    return DecodeResult(PacketBatch(sensor_id, batch_seq, cols), merged)


def _groups(linktype: IntArray) -> list[tuple[int, Sel]]:
    if len(linktype) == 0:
        return []
    first = int(linktype[0])
    if bool((linktype == first).all()):
        return [(first, slice(None))]
    return [(int(lt), np.flatnonzero(linktype == lt)) for lt in np.unique(linktype)]


def _link_layer(
    data: Array, linktype: IntArray, start: IntArray, end: IntArray
) -> tuple[Array, Array, Array]:
    """Per frame: offset of the IP header, IP version expected (0 unknown), drop code."""
    n = len(start)
    l3 = start.copy()
    ver = np.zeros(n, dtype=np.uint8)
    why = np.zeros(n, dtype=np.uint8)
    for lt, sel in _groups(linktype):
        s, e = start[sel], end[sel]
        if lt == LINKTYPE_ETHERNET:
            a, v, w = _ethertype(data, s, e, 12, 14)
        elif lt == LINKTYPE_SLL:
            a, v, w = _ethertype(data, s, e, 14, 16)
        elif lt == LINKTYPE_SLL2:
            a, v, w = _ethertype(data, s, e, 0, 20)
        elif lt in (LINKTYPE_NULL, LINKTYPE_LOOP):
            fam = be32(data, s) if lt == LINKTYPE_LOOP else le32(data, s)
            if lt == LINKTYPE_NULL:  # written in the capturing host's order: undo a big-endian host
                fam = np.where(fam > 0xFFFF, fam.byteswap(), fam)
            a = s + 4
            v = np.where(fam == 2, 4, np.where(np.isin(fam, _AF_INET6), 6, 0)).astype(np.uint8)
            w = np.where(a > e, _TRUNC_LINK, np.where(v == 0, _NOT_IP, 0))
        elif lt in LINKTYPE_RAW or lt in (LINKTYPE_IPV4, LINKTYPE_IPV6):
            a = s
            v = u8(data, s) >> 4 if lt in LINKTYPE_RAW else np.full(len(s), 4 if lt == LINKTYPE_IPV4 else 6)
            w = np.zeros(len(s), dtype=np.uint8)
        else:
            a, v, w = s, np.zeros(len(s), dtype=np.uint8), np.full(len(s), _UNKNOWN_LT, dtype=np.uint8)
        l3[sel], ver[sel], why[sel] = a, v, w
    return l3, ver, why


def _ethertype(data: Array, s: IntArray, e: IntArray, et_at: int, hdr_len: int) -> tuple[Array, Array, Array]:
    """Link headers that carry an ethertype, with up to two VLAN tags after it."""
    et = be16(data, s + et_at)
    a = s + hdr_len
    for _ in range(2):
        tagged = np.flatnonzero((et == 0x8100) | (et == 0x88A8) | (et == 0x9100))
        if len(tagged) == 0:
            break
        a[tagged] += 4
        et[tagged] = be16(data, a[tagged] - 2)
    v = np.where(et == 0x0800, 4, np.where(et == 0x86DD, 6, 0)).astype(np.uint8)
    w = np.where(a > e, _TRUNC_LINK, np.where(v == 0, _NOT_IP, 0))
    return a, v, w


@dataclass
class _V6:
    """IPv6 frames that passed the fixed-header check, and what their extension headers said."""

    rows: IntArray  # frame indices
    proto: Array
    l4: IntArray
    frag: Array
    mflag: Array
    ident: Array
    jumbo: IntArray  # the Jumbo Payload option's length (0 when none)


def _ip_check(data: Array, l3: IntArray, end: IntArray, ver: Array, why: Array) -> _V6:
    """Drop frames whose IP header is not all there or is not IP; walk IPv6 extension headers."""
    some_dropped = bool(why.any())
    cand: Sel = np.flatnonzero(why == 0) if some_dropped else slice(None)
    a, e = l3[cand], end[cand]
    first = u8(data, a)
    v = ver[cand]
    nibble = first >> 4
    is6 = v == 6
    hdr = np.where(is6, 40, (first & 15).astype(np.int64) * 4)
    bad = (nibble != v) | (hdr < 20) | ((v != 4) & ~is6)  # raw IP took v from the nibble: may be 5
    bad &= a < e  # with no byte captured, it is truncated rather than bad
    trunc = a + hdr > e
    if bad.any() or trunc.any():
        why[cand] = np.where(bad, _BAD_IP, np.where(trunc, _TRUNC_IP, 0))
        is6 &= ~(bad | trunc)
    rows = (cand if isinstance(cand, np.ndarray) else np.arange(len(l3)))[is6]
    return _ipv6_walk(data, rows, l3[rows], end[rows], why)


def _ipv6_walk(data: Array, rows: IntArray, a: IntArray, e: IntArray, why: Array) -> _V6:
    m = len(rows)
    nh = u8(data, a + 6)
    pos = a + 40
    frag = np.zeros(m, dtype=np.uint16)
    mflag = np.zeros(m, dtype=np.uint8)
    ident = np.zeros(m, dtype=np.uint16)
    jumbo = _jumbo(data, a, e, nh)
    act = np.flatnonzero(_IPV6_EXT[nh])
    for _ in range(8):
        if len(act) == 0:
            break
        p = pos[act]
        h = nh[act]
        is_frag = h == 44
        length = np.where(is_frag, 8, (u8(data, p + 1).astype(np.int64) + 1) * 8)
        short = p + np.maximum(length, 8) > e[act]
        why[rows[act[short]]] = _TRUNC_IP
        fr = act[is_frag & ~short]
        if len(fr):
            fo = be16(data, pos[fr] + 2)
            frag[fr] = fo >> 3
            mflag[fr] = fo & 1
            ident[fr] = be16(data, pos[fr] + 6)
        nh[act] = u8(data, p)
        pos[act] = p + length
        act = act[~short]
        act = act[_IPV6_EXT[nh[act]] & (frag[act] == 0)]  # a later fragment holds no more headers
    return _V6(rows, nh, pos, frag, mflag, ident, jumbo)


_JUMBO_OPTION = 0xC2  # RFC 2675: option type 0xC2, 4 bytes of length


def _jumbo(data: Array, a: IntArray, e: IntArray, nh: Array) -> IntArray:
    """Per IPv6 packet: the Jumbo Payload length from its hop-by-hop options, 0 when the
    payload length is not 0 or the option is absent (or not captured)."""
    out = np.zeros(len(a), dtype=np.int64)
    act = np.flatnonzero((nh == 0) & (be16(data, a + 4) == 0))
    if len(act) == 0:
        return out
    stop = np.minimum(a[act] + 40 + (u8(data, a[act] + 41).astype(np.int64) + 1) * 8, e[act])
    pos = a[act] + 42
    for _ in range(8):  # the option is 4n+2 aligned: at most a few pads before it
        go = pos + 2 <= stop
        act, pos, stop = act[go], pos[go], stop[go]
        if len(act) == 0:
            break
        kind = u8(data, pos)
        found = (kind == _JUMBO_OPTION) & (u8(data, pos + 1) == 4) & (pos + 6 <= stop)
        out[act[found]] = be32(data, pos[found] + 2)
        pos = pos + np.where(kind == 0, 1, u8(data, pos + 1).astype(np.int64) + 2)
        act, pos, stop = act[~found], pos[~found], stop[~found]
    return out


def _ipv4(data: Array, a3: IntArray, ver: Array, cols: dict[str, Array], l4: IntArray) -> None:
    is4 = ver == 4
    p: Sel = slice(None) if bool(is4.all()) else np.flatnonzero(is4)
    a = a3[p]
    if len(a) == 0:
        return
    ff = be16(data, a + 6)
    put(cols, "total_length", p, be16(data, a + 2).astype(np.uint32))
    put(cols, "ip_id", p, be16(data, a + 4))
    put(cols, "ip_flags", p, ((ff >> 13) & 3).astype(np.uint8))  # DF, MF
    put(cols, "ip_reserved", p, (ff >> 15).astype(np.uint8))  # RFC 3514's "evil" bit
    put(cols, "frag_offset", p, ff & 0x1FFF)
    put(cols, "ttl", p, u8(data, a + 8))
    put(cols, "protocol", p, u8(data, a + 9))
    put(cols, "src", p, be32(data, a + 12))
    put(cols, "dst", p, be32(data, a + 16))
    l4[p] = a + (u8(data, a) & 15).astype(np.int64) * 4


def _ipv6(
    data: Array, v6: _V6, keep: Array, a3: IntArray, ver: Array, cols: dict[str, Array], l4: IntArray
) -> None:
    p = np.flatnonzero(ver == 6)
    if len(p) == 0:
        return
    ok = keep[v6.rows]  # extension-header truncation may have dropped some after the walk
    a = a3[p]
    payload = be16(data, a + 4).astype(np.int64)
    cols["total_length"][p] = np.where(payload == 0, v6.jumbo[ok], payload) + 40
    cols["ttl"][p] = u8(data, a + 7)
    span = np.arange(16)
    cols["src6"][p] = data.take(a[:, None] + (8 + span), mode="clip").view("V16")[:, 0]
    cols["dst6"][p] = data.take(a[:, None] + (24 + span), mode="clip").view("V16")[:, 0]
    cols["protocol"][p] = v6.proto[ok]
    cols["frag_offset"][p] = v6.frag[ok]
    cols["ip_flags"][p] = v6.mflag[ok]
    cols["ip_id"][p] = v6.ident[ok]
    l4[p] = v6.l4[ok]
