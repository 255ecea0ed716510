"""Byte builders for the capture tests: frames by hand (struct), pcap and pcapng containers.

Frames are built from explicit header fields rather than through a packet library, so each
test states on the wire what it decodes. Containers follow the libpcap and pcapng
(draft-ietf-opsawg-pcapng) layouts field by field.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from producers.frames import Frames

ETH_DST = bytes.fromhex("ffffffffffff")
ETH_SRC = bytes.fromhex("020000000001")

# ZMap >= 4.1 SYN probe options (DESIGN.md): MSS 1460, NOP, WS 8, NOP, NOP, SACK permitted.
ZMAP_OPTIONS = bytes.fromhex("020405b4 01030308 01010402")
ZMAP_KINDS = 0x0201030101040000


def ip4(addr: str) -> int:
    """Dotted quad -> 32-bit integer."""
    a, b, c, d = (int(x) for x in addr.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def ipv4(
    payload: bytes,
    *,
    src: str = "192.0.2.1",
    dst: str = "198.51.100.7",
    proto: int = 6,
    ttl: int = 64,
    ident: int = 54321,
    flags: int = 0,
    frag: int = 0,
    options: bytes = b"",
    total: int | None = None,
) -> bytes:
    """An IPv4 header (checksum left 0) followed by ``payload``."""
    ihl = (20 + len(options)) // 4
    length = total if total is not None else 20 + len(options) + len(payload)
    head = struct.pack(
        ">BBHHHBBHII", 0x40 | ihl, 0, length, ident, (flags << 13) | frag, ttl, proto, 0, ip4(src), ip4(dst)
    )
    return head + options + payload


def ipv6(
    payload: bytes,
    *,
    nh: int = 6,
    src: bytes = bytes(15) + b"\x01",
    dst: bytes | None = None,
    hlim: int = 57,
    plen: int | None = None,
) -> bytes:
    """An IPv6 header followed by ``payload`` (extension headers included in it)."""
    dst = dst if dst is not None else bytes.fromhex("20010db8000000000000000000000007")
    length = len(payload) if plen is None else plen
    return struct.pack(">IHBB", 6 << 28, length, nh, hlim) + src + dst + payload


def ext6(nh: int, body: bytes = bytes(6)) -> bytes:
    """A hop-by-hop / routing / destination-options header (body padded to 8n - 2 bytes)."""
    pad = (-(len(body) + 2)) % 8
    body += bytes(pad)
    return bytes([nh, (len(body) + 2) // 8 - 1]) + body


def frag6(nh: int, offset: int, more: bool, ident: int) -> bytes:
    """An IPv6 fragment header."""
    return struct.pack(">BBHI", nh, 0, (offset << 3) | int(more), ident)


def tcp(
    sport: int = 40000,
    dport: int = 23,
    *,
    seq: int = 0x01020304,
    ack: int = 0,
    flags: int = 0x02,
    window: int = 65535,
    options: bytes = b"",
    payload: bytes = b"",
    doff: int | None = None,
) -> bytes:
    """A TCP header (options padded with EOL to a multiple of 4) and payload."""
    options += bytes(-len(options) % 4)
    off = doff if doff is not None else (20 + len(options)) // 4
    return (
        struct.pack(">HHIIBBHHH", sport, dport, seq, ack, off << 4, flags, window, 0, 0) + options + payload
    )


def udp(sport: int = 5353, dport: int = 53, payload: bytes = b"q") -> bytes:
    """A UDP header and payload."""
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp(icmp_type: int, code: int = 0, body: bytes = bytes(4), quote: bytes = b"") -> bytes:
    """An ICMP / ICMPv6 message: type, code, checksum 0, 4 bytes of body, quoted datagram."""
    return struct.pack(">BBH", icmp_type, code, 0) + body + quote


def ether(payload: bytes, ethertype: int = 0x0800, vlans: Sequence[tuple[int, int]] = ()) -> bytes:
    """An Ethernet II frame; ``vlans`` are (TPID, VLAN id) tags, outermost first."""
    tags = b"".join(struct.pack(">HH", tpid, vid) for tpid, vid in vlans)
    return ETH_DST + ETH_SRC + tags + struct.pack(">H", ethertype) + payload


def sll(payload: bytes, proto: int = 0x0800) -> bytes:
    """A Linux cooked (SLL) header: packet type, ARPHRD, address length, address, protocol."""
    return struct.pack(">HHH8sH", 0, 1, 6, ETH_SRC, proto) + payload


def sll2(payload: bytes, proto: int = 0x0800) -> bytes:
    """A Linux cooked v2 (SLL2) header: protocol, reserved, ifindex, ARPHRD, type, addr."""
    return struct.pack(">HHIHBB8s", proto, 0, 2, 1, 0, 6, ETH_SRC) + payload


def null(payload: bytes, family: int = 2, big: bool = False) -> bytes:
    """A BSD loopback (DLT_NULL) header in the given host byte order."""
    return struct.pack(">I" if big else "<I", family) + payload


def arp() -> bytes:
    """An ARP request in an Ethernet frame."""
    return ether(
        struct.pack(">HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, ETH_SRC, bytes(4), bytes(6), bytes(4)), 0x0806
    )


# --- pcap ------------------------------------------------------------------------------------


def pcap_header(
    linktype: int = 1,
    *,
    big: bool = False,
    nano: bool = False,
    snaplen: int = 65535,
    version: tuple[int, int] = (2, 4),
) -> bytes:
    """A pcap file header."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    o = ">" if big else "<"
    return struct.pack(o + "IHHiIII", magic, version[0], version[1], 0, 0, snaplen, linktype)


def pcap_record(
    frame: bytes,
    ts_ns: int,
    *,
    big: bool = False,
    nano: bool = False,
    caplen: int | None = None,
    origlen: int | None = None,
) -> bytes:
    """One pcap record; ``caplen`` overrides the length field (to corrupt it)."""
    sec, frac = divmod(ts_ns, 1_000_000_000)
    frac = frac if nano else frac // 1000
    cl = len(frame) if caplen is None else caplen
    ol = len(frame) if origlen is None else origlen
    return struct.pack((">" if big else "<") + "IIII", sec, frac, cl, ol) + frame


def pcap_file(
    frames: Iterable[bytes],
    *,
    linktype: int = 1,
    big: bool = False,
    nano: bool = False,
    t0: int = 1_650_000_000_000_000_000,
    step: int = 1_000_000,
    snaplen: int = 65535,
) -> bytes:
    """A whole pcap file: frame i at ``t0 + i * step`` ns."""
    recs = b"".join(pcap_record(f, t0 + i * step, big=big, nano=nano) for i, f in enumerate(frames))
    return pcap_header(linktype, big=big, nano=nano, snaplen=snaplen) + recs


# --- pcapng ----------------------------------------------------------------------------------


def block(btype: int, body: bytes, *, big: bool = False) -> bytes:
    """A pcapng block: type, total length, body padded to 4, total length."""
    o = ">" if big else "<"
    body += bytes(-len(body) % 4)
    total = 12 + len(body)
    return struct.pack(o + "II", btype, total) + body + struct.pack(o + "I", total)


def option(code: int, value: bytes, *, big: bool = False) -> bytes:
    """One pcapng option, padded."""
    return struct.pack((">" if big else "<") + "HH", code, len(value)) + value + bytes(-len(value) % 4)


def shb(*, big: bool = False, major: int = 1) -> bytes:
    """A Section Header Block (section length unknown)."""
    o = ">" if big else "<"
    return block(0x0A0D0D0A, struct.pack(o + "IHHq", 0x1A2B3C4D, major, 0, -1), big=big)


def idb(
    linktype: int = 1,
    *,
    snaplen: int = 262144,
    tsresol: int | None = None,
    tsoffset: int | None = None,
    big: bool = False,
) -> bytes:
    """An Interface Description Block with optional if_tsresol / if_tsoffset."""
    o = ">" if big else "<"
    opts = b""
    if tsresol is not None:
        opts += option(9, bytes([tsresol]), big=big)
    if tsoffset is not None:
        opts += option(14, struct.pack(o + "q", tsoffset), big=big)
    if opts:
        opts += option(0, b"", big=big)
    return block(1, struct.pack(o + "HHI", linktype, 0, snaplen) + opts, big=big)


def epb(
    frame: bytes, ts_units: int, *, iface: int = 0, big: bool = False, caplen: int | None = None
) -> bytes:
    """An Enhanced Packet Block; ``ts_units`` in the interface's resolution."""
    o = ">" if big else "<"
    cl = len(frame) if caplen is None else caplen
    head = struct.pack(o + "IIIII", iface, ts_units >> 32, ts_units & 0xFFFFFFFF, cl, len(frame))
    return block(6, head + frame, big=big)


def opb(frame: bytes, ts_units: int, *, iface: int = 0, big: bool = False) -> bytes:
    """An obsolete Packet Block (type 2): 16-bit interface id and drops count."""
    o = ">" if big else "<"
    head = struct.pack(o + "HHIIII", iface, 0, ts_units >> 32, ts_units & 0xFFFFFFFF, len(frame), len(frame))
    return block(2, head + frame, big=big)


def spb(frame: bytes, *, origlen: int | None = None, big: bool = False) -> bytes:
    """A Simple Packet Block: original length and the frame, no timestamp, interface 0."""
    o = ">" if big else "<"
    return block(3, struct.pack(o + "I", len(frame) if origlen is None else origlen) + frame, big=big)


def write(tmp: Path, name: str, data: bytes) -> Path:
    """Write ``data`` to ``tmp / name`` and return the path."""
    path = tmp / name
    path.write_bytes(data)
    return path


def shared_captures() -> Path:
    """Real captures: $DARKSCOPE_SHARED_DIR/captures, else the shared/captures folder beside the repo.

    DARKSCOPE_SHARED_DIR may also name the captures folder itself.
    """
    env = os.environ.get("DARKSCOPE_SHARED_DIR")
    if env:
        given = Path(env)
        return given if given.name == "captures" else given / "captures"
    return Path(__file__).resolve().parents[3] / "shared" / "captures"


def frames_of(
    frames: Sequence[bytes],
    linktypes: int | Sequence[int] = 1,
    *,
    caplens: Sequence[int | None] | None = None,
    t0: int = 1_650_000_000_000_000_000,
) -> Frames:
    """Frames laid end to end in one buffer, as a container reader would index them.

    ``caplens`` cuts frames short (None keeps a frame whole); the cut bytes stay in the buffer
    so a decoder that reads past a caplen would see them.
    """
    offs, pos = [], 0
    for f in frames:
        offs.append(pos)
        pos += len(f)
    n = len(frames)
    lts = [linktypes] * n if isinstance(linktypes, int) else list(linktypes)
    cl = [len(f) if caplens is None or caplens[i] is None else caplens[i] for i, f in enumerate(frames)]
    i64 = np.int64
    return Frames(
        data=np.frombuffer(b"".join(frames) + b"\xee" * 64, dtype=np.uint8),  # junk past the end
        data_off=np.array(offs, dtype=i64),
        caplen=np.array(cl, dtype=i64),
        linktype=np.array(lts, dtype=i64),
        ts=t0 + np.arange(n, dtype=i64) * 1000,
        rec_off=np.array(offs, dtype=i64),
    )


def feed(reader: Any, start: int, data: bytes, chunk: int | None = None) -> list[Any]:
    """Feed a whole file to an incremental reader, ``chunk`` bytes at a time (all at once by default)."""
    results, buf, base, pos = [], b"", start, start
    step = chunk or len(data)
    while True:
        piece = data[pos : pos + step]
        pos += len(piece)
        final = pos >= len(data)
        buf += piece
        res = reader.parse(buf, base, final)
        results.append(res)
        buf, base = buf[res.consumed :], base + res.consumed
        if final or res.stopped:
            return results
