"""Classic libpcap files: the 24-byte file header and an incremental record indexer.

Both byte orders and both timestamp resolutions are read: magic ``a1b2c3d4`` (microseconds)
and ``a1b23c4d`` (nanoseconds), as written by the capturing host (little-endian files carry
them byte-swapped). The link type is per file.

The reader copies nothing: one Python pass follows the 16-byte record headers (only the
``caplen`` field is needed to find the next record), and the other header fields are then
gathered with NumPy.

A record whose ``caplen`` exceeds the file's snaplen (or 256 KiB) means the file is corrupt
from that point: the reader counts ``bad_record_length`` and scans forward for a plausible
record header (sane lengths, sub-second field in range, time within a day of the last good
record) whose successor is plausible too, then carries on from there. If nothing plausible
turns up within ``resync_limit`` bytes it stops the file (``resync_failed``); the packets
read before are kept either way. A file that ends inside a record counts ``truncated_record``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import CaptureError, TruncatedRecord
from producers.frames import Buffer, Frames, IntArray, ParseResult, Problem, Reason, U8Array, u32

__all__ = [
    "MAX_CAPLEN",
    "PCAP_HEADER_LEN",
    "PcapHeader",
    "PcapReader",
    "is_pcap",
    "parse_header",
]

PCAP_HEADER_LEN = 24
RECORD_HEADER_LEN = 16
MAX_CAPLEN = 256 * 1024  # larger records are corrupt lengths, not packets
RESYNC_LIMIT = 64 * 1024 * 1024  # give a file up after this many unreadable bytes
_RESYNC_WINDOW = 1 << 20  # bytes scanned per NumPy pass while resynchronising
_MAX_TIME_JUMP = 86_400  # seconds: a resync candidate must be this close to the last good record

# first four bytes of the file -> (struct byte order, nanosecond timestamps)
_MAGICS: dict[bytes, tuple[str, bool]] = {
    bytes.fromhex("d4c3b2a1"): ("<", False),
    bytes.fromhex("a1b2c3d4"): (">", False),
    bytes.fromhex("4d3cb2a1"): ("<", True),
    bytes.fromhex("a1b23c4d"): (">", True),
}


@dataclass(frozen=True)
class PcapHeader:
    """The pcap file header."""

    big_endian: bool
    nanosecond: bool
    version: tuple[int, int]
    snaplen: int
    linktype: int
    fcs_len: int  # bytes of FCS at the end of each frame, when the header says so (else 0)


def is_pcap(magic: bytes) -> bool:
    """Whether the first four bytes of a file are a pcap magic number."""
    return bytes(magic[:4]) in _MAGICS


def parse_header(data: bytes) -> PcapHeader:
    """Read the file header at the start of ``data``; raise CaptureError when it is not pcap."""
    magic = bytes(data[:4])
    if magic not in _MAGICS:
        raise CaptureError(f"not a pcap file: magic {magic.hex() or '(empty)'}")
    if len(data) < PCAP_HEADER_LEN:
        raise TruncatedRecord(f"pcap file header cut short: {len(data)} of {PCAP_HEADER_LEN} bytes")
    order, nanosecond = _MAGICS[magic]
    major, minor, _zone, _sigfigs, snaplen, network = struct.unpack_from(order + "HHiIII", data, 4)
    if major != 2:
        raise CaptureError(f"unsupported pcap version {major}.{minor} (only 2.x exists)")
    # The link-type field's upper bits may carry the FCS length (bit 28 set: bits 29-31 x 2 bytes).
    fcs_len = ((network >> 29) & 7) * 2 if network & (1 << 28) else 0
    return PcapHeader(order == ">", nanosecond, (major, minor), snaplen, network & 0xFFFF, fcs_len)


class PcapReader:
    """Incremental pcap record reader: feed it the stream after the file header, chunk by chunk."""

    format = "pcap"

    def __init__(
        self, header: PcapHeader, *, max_caplen: int = MAX_CAPLEN, resync_limit: int = RESYNC_LIMIT
    ) -> None:
        self.header = header
        self.max_caplen = min(header.snaplen, max_caplen) if header.snaplen else max_caplen
        self.resync_limit = resync_limit
        self._order = ">" if header.big_endian else "<"
        self._caplen_at = struct.Struct(self._order + "I").unpack_from
        self._caplen_in_header = struct.Struct(self._order + "8xI").unpack_from
        self._frac_scale = 1 if header.nanosecond else 1000
        self._frac_max = 1_000_000_000 if header.nanosecond else 1_000_000
        self._last_sec: int | None = None
        self._resync_start: int | None = None  # stream offset of the bad record being skipped

    @classmethod
    def from_start(cls, data: bytes, **kwargs: int) -> tuple[PcapReader, int]:
        """A reader for the file whose first bytes are ``data``, and where its records start."""
        return cls(parse_header(data), **kwargs), PCAP_HEADER_LEN

    def parse(self, buf: Buffer, base: int, final: bool) -> ParseResult:
        """Index the complete records in ``buf`` (stream offset ``base``); see RecordReader."""
        n = len(buf)
        data = np.frombuffer(buf, dtype=np.uint8)
        pos = 0
        runs: list[tuple[IntArray, IntArray]] = []
        problems: list[Problem] = []
        while True:
            if self._resync_start is not None:
                found, pos = self._resync(buf, pos, base, final, problems)
                if not found:
                    if self._resync_start is not None and base + pos - self._resync_start > self.resync_limit:
                        problems.append(self._give_up(base + pos))
                        return ParseResult(self._frames(data, runs, base), n, problems, stopped=True)
                    break
            run, pos, bad = self._index(buf, data, pos)
            runs.append(run)
            if len(run[0]):  # the time a resync candidate must be near
                self._last_sec = int(u32(data, run[0][-1:], self.header.big_endian)[0])
            if not bad:
                break
            (caplen,) = self._caplen_at(buf, pos + 8)
            detail = (
                f"record length {caplen} exceeds the limit {self.max_caplen}; looking for the next record"
            )
            problems.append(Problem(Reason.BAD_RECORD_LENGTH, base + pos, detail))
            self._resync_start = base + pos
            pos += 1
        frames = self._frames(data, runs, base)
        if final and pos < n:
            problems.append(self._tail_problem(buf, pos, base))
            pos = n
        return ParseResult(frames, pos, problems)

    def _index(self, buf: Buffer, data: U8Array, pos: int) -> tuple[tuple[IntArray, IntArray], int, bool]:
        """Follow caplen from record to record: ((offsets, caplens), where it stopped, at a bad length?).

        The loop only jumps (the fastest CPython can walk a chain); the lengths it trusted are
        checked afterwards, all at once, and the run is cut at the first bad one.
        """
        caplen_at = self._caplen_in_header  # reads the caplen field of the header at ``pos``
        offs: list[int] = []
        append = offs.append
        n = len(buf)
        try:  # no bounds test in the loop: reading past the end raises, and ends it
            while True:
                append(pos)
                (caplen,) = caplen_at(buf, pos)
                pos += caplen + RECORD_HEADER_LEN
        except struct.error:
            pos = offs.pop()  # its caplen field is not in the buffer
        rec = np.array(offs, dtype=np.int64)
        caplen = u32(data, rec + 8, self.header.big_endian).astype(np.int64)
        over = np.flatnonzero(caplen > self.max_caplen)
        if len(over):
            cut = int(over[0])
            return (rec[:cut], caplen[:cut]), int(rec[cut]), True
        if pos > n:  # the last record is not all in the buffer yet
            return (rec[:-1], caplen[:-1]), int(rec[-1]), False
        return (rec, caplen), pos, False

    def _frames(self, data: U8Array, runs: list[tuple[IntArray, IntArray]], base: int) -> Frames:
        if not runs:
            return Frames.empty(data)
        rec, caplen = runs[0] if len(runs) == 1 else (np.concatenate(r) for r in zip(*runs, strict=True))
        if len(rec) == 0:
            return Frames.empty(data)
        big = self.header.big_endian
        sec = u32(data, rec, big).astype(np.int64)
        frac = u32(data, rec + 4, big).astype(np.int64)
        return Frames(
            data=data,
            data_off=rec + RECORD_HEADER_LEN,
            caplen=caplen,
            linktype=np.full(len(rec), self.header.linktype, dtype=np.int64),
            ts=sec * 1_000_000_000 + frac * self._frac_scale,
            rec_off=rec + base,
        )

    def _tail_problem(self, buf: Buffer, pos: int, base: int) -> Problem:
        left = len(buf) - pos
        if left < RECORD_HEADER_LEN:
            detail = f"capture ends {left} bytes into a record header"
        else:
            (caplen,) = self._caplen_at(buf, pos + 8)
            detail = f"capture ends {left - RECORD_HEADER_LEN} bytes into a record of {caplen}"
        return Problem(Reason.TRUNCATED_RECORD, base + pos, detail)

    def _give_up(self, where: int) -> Problem:
        start = self._resync_start if self._resync_start is not None else where
        self._resync_start = None
        return Problem(
            Reason.RESYNC_FAILED,
            start,
            f"no plausible record header in the {where - start} bytes after offset {start}; "
            "the rest of the file is skipped",
        )

    def _plausible(self, sec: int, frac: int, caplen: int, origlen: int) -> bool:
        if not (caplen <= self.max_caplen and caplen <= origlen <= MAX_CAPLEN and frac < self._frac_max):
            return False
        return self._last_sec is None or abs(sec - self._last_sec) <= _MAX_TIME_JUMP

    def _resync(
        self, buf: Buffer, pos: int, base: int, final: bool, problems: list[Problem]
    ) -> tuple[bool, int]:
        """Scan from ``pos`` for the next plausible record: (found, where to continue)."""
        n = len(buf)
        unpack = struct.Struct(self._order + "IIII").unpack_from
        while pos + RECORD_HEADER_LEN <= n:
            stop = min(n, pos + _RESYNC_WINDOW + RECORD_HEADER_LEN - 1)
            for cand in self._candidates(buf, pos, stop):
                sec, frac, caplen, origlen = unpack(buf, cand)
                if not self._plausible(sec, frac, caplen, origlen):
                    continue
                nxt = cand + RECORD_HEADER_LEN + caplen
                if nxt == n and final:
                    self._resync_start = None
                    return True, cand
                if nxt + RECORD_HEADER_LEN > n:
                    if final:
                        continue
                    return False, cand  # cannot judge it yet: wait for more data from here
                if self._plausible(*unpack(buf, nxt)):
                    self._resync_start = None
                    return True, cand
            pos = stop - RECORD_HEADER_LEN + 1
        if final:
            problems.append(self._give_up(base + n))
            return False, n
        return False, pos

    def _candidates(self, buf: Buffer, start: int, stop: int) -> list[int]:
        """Offsets in ``buf[start:stop]`` where a 16-byte record header with sane lengths could start."""
        w = np.frombuffer(buf, dtype=np.uint8, count=stop - start, offset=start).astype(np.uint32)
        m = len(w) - RECORD_HEADER_LEN + 1
        if m <= 0:
            return []

        def word(k: int) -> npt.NDArray[Any]:
            b = [w[k + i : k + i + m] for i in range(4)]
            if not self.header.big_endian:
                b.reverse()
            return (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]

        caplen, origlen, frac = word(8), word(12), word(4)
        ok = (caplen <= self.max_caplen) & (caplen <= origlen) & (origlen <= MAX_CAPLEN)
        ok &= frac < self._frac_max
        return [start + int(i) for i in np.flatnonzero(ok)]
