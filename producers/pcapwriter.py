"""Write PacketBatches as capture files: classic pcap (micro- or nanosecond) and pcapng.

Each packet becomes an Ethernet frame with a real IPv4 or IPv6 header and a TCP, UDP or ICMP
header built from the batch columns; the payload is zero bytes up to the IP length in the
``length`` column. IPv4 header, TCP, UDP and ICMP checksums are all computed (ICMPv6 and
TCP/UDP over IPv6 with the IPv6 pseudo-header). TCP options are rebuilt from ``tcp_opt_kinds``
(MSS and window scale from their columns, timestamp and SACK blocks as zeros). ICMPv4 errors
carry the quoted IPv4 header and the first 8 bytes of its TCP/UDP header from the ``inner_``
columns. Not rebuilt: IPv6 extension headers (fragments are written as plain IPv6), IP options.

Work is vectorised: packets are grouped by header shape (version, transport, options, length),
each group is built as one (n, frame length) byte array, and the records are scattered into the
output buffer in batch order. Short snaplens truncate frames as a capture would.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Literal

import numpy as np
import numpy.typing as npt

from core.errors import ConfigError
from schemas.batch import PacketBatch

__all__ = ["PcapWriter", "PcapngWriter", "encode_records", "open_writer", "write_capture"]

Array = npt.NDArray[Any]
LINKTYPE_ETHERNET = 1
ETH_DST = np.frombuffer(bytes.fromhex("00005e005301"), np.uint8)  # RFC 7042 documentation MACs
ETH_SRC = np.frombuffer(bytes.fromhex("00005e005302"), np.uint8)
TCP, UDP, ICMP, ICMP6 = 6, 17, 1, 58
ICMP_ERRORS = (3, 4, 5, 11, 12)  # ICMPv4 types that quote the offending datagram
OTHER, L4_TCP, L4_UDP, L4_ICMP, L4_ICMP_ERR = 0, 1, 2, 3, 4
L4_HEADER = {OTHER: 0, L4_TCP: 20, L4_UDP: 8, L4_ICMP: 8, L4_ICMP_ERR: 36}
OPTION_SIZE = {0: 1, 1: 1, 2: 4, 3: 3, 4: 2, 5: 10, 8: 10}  # kind -> bytes (EOL, NOP, MSS, ...)

# The header shape of a packet; "total" (IP length) varies inside a shape: payloads are zeros.
_SHAPE = np.dtype([("version", "u1"), ("l4", "u1"), ("optlen", "u1"), ("kinds", "<u8"), ("total", "<u2")])


def _put(buf: Array, off: int, values: Any, dtype: str) -> None:
    """Write big-endian ``values`` (an array per row, or one scalar) at byte ``off`` of each row."""
    arr = np.asarray(values).astype(dtype)
    width = arr.dtype.itemsize
    if arr.ndim == 0:
        buf[:, off : off + width] = np.frombuffer(arr.tobytes(), np.uint8)
    else:
        buf[:, off : off + width] = arr.view(np.uint8).reshape(-1, width)


def _sum16(buf: Array, start: int, stop: int) -> Array:
    """One's-complement input: sum of the 16-bit big-endian words of bytes [start, stop)."""
    seg = buf[:, start:stop].astype(np.uint64)
    total: Array = (seg[:, 0::2] << np.uint64(8)).sum(axis=1) + seg[:, 1::2].sum(axis=1)
    return total


def _fold(total: Array) -> Array:
    for _ in range(4):
        total = (total & np.uint64(0xFFFF)) + (total >> np.uint64(16))
    return (~total & np.uint64(0xFFFF)).astype(np.uint16)


def _options(optlen: int, kinds: int) -> tuple[Array, int | None, int | None]:
    """Option bytes for a packed kinds word; offsets of the MSS and window-scale values."""
    out = bytearray()
    mss_at = ws_at = None
    for shift in range(56, -8, -8):
        kind = (kinds >> shift) & 0xFF
        if kind == 0:
            break
        size = OPTION_SIZE.get(kind, 2)
        if len(out) + size > optlen:
            break
        if kind == 2:
            mss_at = len(out) + 2
        if kind == 3:
            ws_at = len(out) + 2
        out += bytes([kind]) if size == 1 else bytes([kind, size]) + bytes(size - 2)
    out += bytes(optlen - len(out))  # pad with end-of-option-list
    return np.frombuffer(bytes(out), np.uint8), mss_at, ws_at


def _shapes(batch: PacketBatch) -> Array:
    n = len(batch)
    version, proto = batch["ip_version"], batch["protocol"]
    frag = batch["frag_offset"] > 0
    l4 = np.full(n, OTHER, np.uint8)
    l4[(proto == TCP) & ~frag] = L4_TCP
    l4[(proto == UDP) & ~frag] = L4_UDP
    icmp = (((proto == ICMP) & (version == 4)) | ((proto == ICMP6) & (version == 6))) & ~frag
    l4[icmp] = L4_ICMP
    quoted = icmp & (version == 4) & np.isin(batch["icmp_type"], ICMP_ERRORS) & (batch["inner_protocol"] > 0)
    l4[quoted] = L4_ICMP_ERR
    optlen = np.where(l4 == L4_TCP, np.minimum((batch["tcp_opt_len"].astype(np.int64) + 3) // 4 * 4, 40), 0)
    ihl = np.where(version == 6, 40, 20)
    header = ihl + np.array([L4_HEADER[i] for i in range(5)])[l4] + optlen
    shapes = np.zeros(n, _SHAPE)
    shapes["version"], shapes["l4"], shapes["optlen"] = version, l4, optlen
    shapes["kinds"] = np.where(l4 == L4_TCP, batch["tcp_opt_kinds"], 0)
    shapes["total"] = np.minimum(np.maximum(batch["length"].astype(np.int64), header), 65535)
    return shapes


class _Rows:
    """The columns of some rows of a batch, gathered when first asked for."""

    def __init__(self, batch: PacketBatch, rows: Array) -> None:
        self.batch, self.rows, self.cache = batch, rows, dict[str, Array]()

    def __getitem__(self, name: str) -> Array:
        if name not in self.cache:
            self.cache[name] = self.batch[name][self.rows]
        return self.cache[name]


def _groups(shapes: Array) -> list[Array]:
    """Row indices (ascending) of each distinct shape, found with one integer sort."""
    _, kinds = np.unique(shapes["kinds"], return_inverse=True)
    key = (kinds.ravel().astype(np.int64) << 26) | (shapes["version"].astype(np.int64) == 6) << 25
    key |= (shapes["l4"].astype(np.int64) << 22) | (shapes["optlen"].astype(np.int64) << 16)
    order = np.argsort(key, kind="stable")
    cuts = np.flatnonzero(np.diff(key[order])) + 1
    return np.split(order, cuts)


def _build(batch: PacketBatch, rows: Array, shape: Any, total: Array) -> Array:
    """Ethernet, IP and transport headers of the rows of one shape, as an (n, width) byte array.

    ``total`` is each row's IP length; the payload after the headers is zeros, so it adds
    nothing to a checksum beyond its length in the pseudo-header.
    """
    version, l4, optlen, kinds = (int(shape[k]) for k in ("version", "l4", "optlen", "kinds"))
    col = _Rows(batch, rows)
    n = len(rows)
    ihl = 40 if version == 6 else 20
    buf = np.zeros((n, 14 + ihl + L4_HEADER[l4] + optlen), np.uint8)
    buf[:, 0:6], buf[:, 6:12] = ETH_DST, ETH_SRC
    if version == 6:
        _put(buf, 12, 0x86DD, ">u2")
        _put(buf, 14, 0x60000000, ">u4")
        _put(buf, 18, total - 40, ">u2")
        buf[:, 20], buf[:, 21] = col["protocol"], col["ttl"]
        buf[:, 22:38] = col["src6"].view(np.uint8).reshape(n, 16)
        buf[:, 38:54] = col["dst6"].view(np.uint8).reshape(n, 16)
        pseudo = _sum16(buf, 22, 54)
        o = 54
    else:
        _put(buf, 12, 0x0800, ">u2")
        buf[:, 14] = 0x45
        _put(buf, 16, total, ">u2")
        _put(buf, 18, col["ip_id"], ">u2")
        flags = (col["ip_flags"].astype(np.uint16) & 3) | (col["ip_reserved"].astype(np.uint16) << 2)
        _put(buf, 20, (flags << 13) | (col["frag_offset"] & 0x1FFF), ">u2")
        buf[:, 22], buf[:, 23] = col["ttl"], col["protocol"]
        _put(buf, 26, col["src"], ">u4")
        _put(buf, 30, col["dst"], ">u4")
        _put(buf, 24, _fold(_sum16(buf, 14, 34)), ">u2")
        pseudo = _sum16(buf, 26, 34)
        o = 34
    seg_len = total - ihl
    pseudo = pseudo + seg_len.astype(np.uint64) + col["protocol"].astype(np.uint64)
    if l4 == L4_TCP:
        _put(buf, o, col["sport"], ">u2")
        _put(buf, o + 2, col["dport"], ">u2")
        _put(buf, o + 4, col["tcp_seq"], ">u4")
        _put(buf, o + 8, col["tcp_ack"], ">u4")
        buf[:, o + 12] = (5 + optlen // 4) << 4
        buf[:, o + 13] = col["tcp_flags"]
        _put(buf, o + 14, col["tcp_window"], ">u2")
        if optlen:
            template, mss_at, ws_at = _options(optlen, kinds)
            buf[:, o + 20 : o + 20 + optlen] = template
            if mss_at is not None:
                _put(buf, o + 20 + mss_at, col["tcp_mss"], ">u2")
            if ws_at is not None:
                buf[:, o + 20 + ws_at] = col["tcp_wscale"]
        _put(buf, o + 16, _fold(pseudo + _sum16(buf, o, o + 20 + optlen)), ">u2")
    elif l4 == L4_UDP:
        _put(buf, o, col["sport"], ">u2")
        _put(buf, o + 2, col["dport"], ">u2")
        _put(buf, o + 4, seg_len, ">u2")
        csum = _fold(pseudo + _sum16(buf, o, o + 8))
        _put(buf, o + 6, np.where(csum == 0, 0xFFFF, csum), ">u2")
    elif l4 in (L4_ICMP, L4_ICMP_ERR):
        buf[:, o], buf[:, o + 1] = col["icmp_type"], col["icmp_code"]
        end = o + 8
        if l4 == L4_ICMP_ERR:
            _quote(buf, o + 8, col)
            end = o + 36
        total_sum = _sum16(buf, o, end) + (pseudo if version == 6 else np.uint64(0))
        _put(buf, o + 2, _fold(total_sum), ">u2")
    return buf


def _quote(buf: Array, q: int, col: _Rows) -> None:
    """The quoted datagram of an ICMPv4 error: its IPv4 header and 8 bytes of TCP/UDP."""
    inner = col["inner_protocol"]
    buf[:, q] = 0x45
    _put(buf, q + 2, np.where(inner == TCP, 40, 28), ">u2")
    buf[:, q + 8] = np.where(col["icmp_type"] == 11, 1, 64)  # a TTL-exceeded quote arrived with TTL 1
    buf[:, q + 9] = inner
    _put(buf, q + 12, col["inner_src"], ">u4")
    _put(buf, q + 16, col["inner_dst"], ">u4")
    _put(buf, q + 10, _fold(_sum16(buf, q, q + 20)), ">u2")
    _put(buf, q + 20, col["inner_sport"], ">u2")
    _put(buf, q + 22, col["inner_dport"], ">u2")
    _put(buf, q + 24, np.where(inner == UDP, 8, 0), ">u2")  # UDP length; TCP: high half of seq


def encode_records(
    batch: PacketBatch,
    fmt: Literal["pcap", "pcapng"] = "pcap",
    *,
    nanosecond: bool = True,
    snaplen: int = 65535,
) -> bytes:
    """The capture records (pcap packet records or pcapng EPBs) of a batch, in batch order."""
    n = len(batch)
    if n == 0:
        return b""
    shapes = _shapes(batch)
    frame_len = 14 + shapes["total"].astype(np.int64)
    caplen = np.minimum(frame_len, snaplen)
    ts = batch["ts"].astype(np.int64)
    if fmt == "pcap":
        head = 16
        rec_len = head + caplen
    else:
        head = 28
        rec_len = head + (caplen + 3) // 4 * 4 + 4
    starts = np.concatenate([[0], np.cumsum(rec_len)[:-1]])
    out = np.zeros(int(rec_len.sum()), np.uint8)
    if fmt == "pcap":
        sec, frac = ts // 10**9, ts % 10**9
        words = [sec, frac if nanosecond else frac // 1000, caplen, frame_len]
    else:
        units = ts if nanosecond else ts // 1000
        words = [
            np.full(n, 6),
            rec_len,
            np.zeros(n, np.int64),
            units >> 32,
            units & 0xFFFFFFFF,
            caplen,
            frame_len,
        ]
        trailer = rec_len.astype("<u4").view(np.uint8).reshape(n, 4)
        out[(starts + rec_len - 4)[:, None] + np.arange(4)] = trailer
    record = np.stack(words, axis=1).astype("<u4").view(np.uint8).reshape(n, head)
    out[starts[:, None] + np.arange(head)] = record
    for rows in _groups(shapes):
        frames = _build(batch, rows, shapes[rows[0]], shapes["total"][rows].astype(np.int64))
        width = min(frames.shape[1], snaplen)  # headers fit in every frame: total >= header length
        out[(starts[rows] + head)[:, None] + np.arange(width)] = frames[:, :width]
    return out.tobytes()


class _Writer:
    fmt: Literal["pcap", "pcapng"] = "pcap"

    def __init__(self, file: str | Path | BinaryIO, *, nanosecond: bool = True, snaplen: int = 65535) -> None:
        if not 0 < snaplen <= 262144:
            raise ConfigError(f"snaplen {snaplen} out of range")
        self._own = isinstance(file, (str, Path))
        self._file: BinaryIO = open(file, "wb") if isinstance(file, (str, Path)) else file  # noqa: SIM115
        self.nanosecond, self.snaplen, self.packets = nanosecond, snaplen, 0
        self._file.write(self._header())

    def _header(self) -> bytes:
        raise NotImplementedError

    def write(self, batch: PacketBatch) -> int:
        """Append a batch; returns the number of packets written."""
        self._file.write(encode_records(batch, self.fmt, nanosecond=self.nanosecond, snaplen=self.snaplen))
        self.packets += len(batch)
        return len(batch)

    def close(self) -> None:
        """Flush, and close the file if this writer opened it."""
        self._file.flush()
        if self._own:
            self._file.close()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class PcapWriter(_Writer):
    """Classic libpcap file, Ethernet link type, micro- or nanosecond timestamps."""

    fmt = "pcap"

    def _header(self) -> bytes:
        magic = 0xA1B23C4D if self.nanosecond else 0xA1B2C3D4
        return struct.pack("<IHHiIII", magic, 2, 4, 0, 0, self.snaplen, LINKTYPE_ETHERNET)


class PcapngWriter(_Writer):
    """pcapng file: one section, one Ethernet interface (if_tsresol 9 for nanoseconds)."""

    fmt = "pcapng"

    def _header(self) -> bytes:
        shb = struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
        opts = struct.pack("<HHB3x", 9, 1, 9) if self.nanosecond else b""
        opts += struct.pack("<HH", 0, 0)
        length = 20 + len(opts)
        idb = struct.pack("<IIHHI", 1, length, LINKTYPE_ETHERNET, 0, self.snaplen) + opts
        return shb + idb + struct.pack("<I", length)


def open_writer(
    path: str | Path | BinaryIO, fmt: str = "pcap", *, nanosecond: bool = True, snaplen: int = 65535
) -> PcapWriter | PcapngWriter:
    """A writer for ``fmt`` ('pcap' or 'pcapng')."""
    if fmt == "pcap":
        return PcapWriter(path, nanosecond=nanosecond, snaplen=snaplen)
    if fmt == "pcapng":
        return PcapngWriter(path, nanosecond=nanosecond, snaplen=snaplen)
    raise ConfigError(f"capture format must be pcap or pcapng, not {fmt!r}")


def write_capture(
    path: str | Path,
    batches: Iterable[PacketBatch],
    fmt: str = "pcap",
    *,
    nanosecond: bool = True,
    snaplen: int = 65535,
) -> int:
    """Write batches to one capture file; returns the number of packets."""
    with open_writer(path, fmt, nanosecond=nanosecond, snaplen=snaplen) as writer:
        for batch in batches:
            writer.write(batch)
        return writer.packets
