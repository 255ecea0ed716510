"""pcapng files: sections, interfaces and packet blocks, indexed incrementally.

Read: Section Header Blocks (either byte order, several sections per file; each section
starts a fresh interface table), Interface Description Blocks (link type, snaplen, the
``if_tsresol`` option, default 10^-6 s, and ``if_tsoffset`` in seconds), Enhanced Packet
Blocks, Simple Packet Blocks (no interface id and no timestamp: interface 0, the time of the
previous packet, or 0 when none came before, counted as ``untimed``) and the obsolete
Packet Block. Name resolution, interface statistics, decryption secrets, systemd journal
and custom blocks are skipped; other block types are skipped and counted as ``unknown_block``.

One Python pass follows the block lengths; the packet fields are then gathered with NumPy.
A block length that is not a multiple of 4, too small, absurd, or that disagrees with the
copy at the end of the block counts ``bad_record_length``: the reader then scans forward
(4-byte aligned) for the next well-formed block of a known type, or stops the file after
``resync_limit`` bytes (``resync_failed``). A packet block whose captured length does not fit
inside it also counts ``bad_record_length`` (that packet is skipped, the next block is fine).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from core.errors import CaptureError, TruncatedRecord
from producers.frames import Buffer, Frames, IntArray, ParseResult, Problem, Reason, U8Array, u16, u32
from producers.pcap import MAX_CAPLEN, RESYNC_LIMIT

__all__ = ["BLOCK_SHB", "Interface", "PcapngReader", "is_pcapng"]

BLOCK_SHB = 0x0A0D0D0A
BLOCK_IDB = 0x00000001
BLOCK_OPB = 0x00000002  # obsolete Packet Block
BLOCK_SPB = 0x00000003
BLOCK_NRB = 0x00000004
BLOCK_ISB = 0x00000005
BLOCK_EPB = 0x00000006
BLOCK_SJE = 0x00000009
BLOCK_DSB = 0x0000000A
SKIPPED_BLOCKS = frozenset({BLOCK_NRB, BLOCK_ISB, BLOCK_SJE, BLOCK_DSB, 0x00000BAD, 0x40000BAD})
KNOWN_BLOCKS = SKIPPED_BLOCKS | {BLOCK_SHB, BLOCK_IDB, BLOCK_OPB, BLOCK_SPB, BLOCK_EPB}
BOM_LE = bytes.fromhex("4d3c2b1a")
BOM_BE = bytes.fromhex("1a2b3c4d")
MAX_BLOCK = 64 * 1024 * 1024  # larger lengths are corruption
MAX_PACKET_BLOCK = MAX_CAPLEN + 65_536  # a packet block holds one frame (<= MAX_CAPLEN) and options
# smallest total length of each block type (header, fixed fields, trailer)
_MIN_LEN = {BLOCK_SHB: 28, BLOCK_IDB: 20, BLOCK_OPB: 32, BLOCK_SPB: 16, BLOCK_EPB: 32}
OPT_TSRESOL = 9
OPT_TSOFFSET = 14
_MAX_TSOFFSET = 4_000_000_000  # seconds (~127 years): timestamps stay within int64 nanoseconds


@dataclass(frozen=True)
class Interface:
    """One IDB: link type, snaplen and how to turn its timestamps into nanoseconds."""

    linktype: int
    snaplen: int
    tsresol: int = 6  # the if_tsresol byte: 10^-n s, or 2^-n s when the top bit is set
    tsoffset: int = 0  # seconds added to every timestamp

    def to_ns(self, raw: npt.NDArray[np.uint64]) -> IntArray:
        """Raw 64-bit timestamps of this interface as ns since the epoch."""
        exp = self.tsresol & 0x7F
        if self.tsresol & 0x80:
            sec = (raw >> np.uint64(exp)).astype(np.int64)
            frac = (raw & np.uint64((1 << exp) - 1)).astype(np.float64)
            ns = sec * 1_000_000_000 + np.rint(frac * (1e9 / 2.0**exp)).astype(np.int64)
        elif exp <= 9:
            ns = raw.astype(np.int64) * 10 ** (9 - exp)
        else:
            ns = (raw // np.uint64(10 ** (exp - 9))).astype(np.int64)
        return ns + self.tsoffset * 1_000_000_000


@dataclass
class _Section:
    big: bool
    first_iface: int  # index of this section's interface 0 in the reader's interface list
    n_ifaces: int = 0
    pk_start: int = 0  # first packet block (index in this parse) belonging to the section


@dataclass
class _Blocks:
    """Packet blocks found in one buffer, in file order."""

    offs: list[int] = field(default_factory=list)
    other_kinds: list[tuple[int, int]] = field(default_factory=list)  # (index, SPB/OPB)
    sections: list[_Section] = field(default_factory=list)
    skipped: int = 0


def is_pcapng(magic: bytes) -> bool:
    """Whether the first four bytes of a file are a pcapng Section Header Block type."""
    return bytes(magic[:4]) == BLOCK_SHB.to_bytes(4, "big")


class PcapngReader:
    """Incremental pcapng block reader: feed it the whole stream, chunk by chunk."""

    format = "pcapng"

    def __init__(self, *, resync_limit: int = RESYNC_LIMIT) -> None:
        self.resync_limit = resync_limit
        self.interfaces: list[Interface] = []
        self._section: _Section | None = None
        self._last_ts = 0
        self._resync_start: int | None = None

    @classmethod
    def from_start(cls, data: bytes, **kwargs: int) -> tuple[PcapngReader, int]:
        """A reader for the file whose first bytes are ``data``; raise CaptureError if not pcapng."""
        if not is_pcapng(data):
            raise CaptureError(f"not a pcapng file: first block type {bytes(data[:4]).hex() or '(empty)'}")
        if len(data) < 28:
            raise TruncatedRecord(f"pcapng section header cut short: {len(data)} of 28 bytes")
        bom = bytes(data[8:12])
        if bom not in (BOM_LE, BOM_BE):
            raise CaptureError(f"pcapng section header with a bad byte-order magic {bom.hex()}")
        major, minor = struct.unpack_from("<HH" if bom == BOM_LE else ">HH", data, 12)
        if major != 1:
            raise CaptureError(f"unsupported pcapng version {major}.{minor}")
        return cls(**kwargs), 0

    def parse(self, buf: Buffer, base: int, final: bool) -> ParseResult:
        """Index the complete blocks in ``buf`` (stream offset ``base``); see RecordReader."""
        n = len(buf)
        problems: list[Problem] = []
        blocks = _Blocks()
        if self._section is not None:
            self._section.pk_start = 0
            blocks.sections.append(self._section)
        pos = 0
        while pos + 12 <= n:
            if self._resync_start is not None:
                found, pos = self._resync(buf, pos, base, final)
                if not found:
                    if final or base + pos - self._resync_start > self.resync_limit:
                        problems.append(self._give_up(base + pos))
                        frames, untimed = self._frames(buf, base, blocks, problems)
                        return ParseResult(frames, n, problems, True, blocks.skipped, untimed)
                    break
            pos, bad = self._walk(buf, pos, n, blocks, problems, base)
            if not bad:
                break
            self._resync_start = base + pos
            pos += 4
        frames, untimed = self._frames(buf, base, blocks, problems)
        if final and pos < n:
            if self._resync_start is not None:
                problems.append(self._give_up(base + n))
            else:
                detail = f"capture ends {n - pos} bytes into a block"
                problems.append(Problem(Reason.TRUNCATED_RECORD, base + pos, detail))
            pos = n
        return ParseResult(frames, pos, problems, False, blocks.skipped, untimed)

    def _walk(
        self, buf: Buffer, pos: int, n: int, blocks: _Blocks, problems: list[Problem], base: int
    ) -> tuple[int, bool]:
        """Follow block lengths from ``pos``: (where it stopped, whether at a bad block).

        Enhanced Packet Blocks take a fast path that only jumps; their lengths are checked
        in bulk (:meth:`_check_run`) before any other block is acted on, and at the end.
        """
        big = self._section.big if self._section else False
        head = struct.Struct((">" if big else "<") + "II").unpack_from
        data = np.frombuffer(buf, dtype=np.uint8)
        offs = blocks.offs
        append = offs.append
        run = len(offs)
        epb = BLOCK_EPB
        while pos + 12 <= n:
            try:  # the fast path: no bounds test, reading past the end raises and ends it
                while True:
                    btype, blen = head(buf, pos)
                    if btype != epb or blen < 32:
                        break
                    append(pos)
                    pos += blen
            except struct.error:
                break
            if pos + 12 > n:
                break
            stop = self._check_run(data, offs, run, big, problems, base)
            if stop is not None:
                return stop
            if btype == BLOCK_SHB:
                bom = buf[pos + 8 : pos + 12]
                if bom not in (BOM_LE, BOM_BE):
                    problems.append(Problem(Reason.BAD_RECORD_LENGTH, base + pos, "bad byte-order magic"))
                    return pos, True
                big = bom == BOM_BE
                head = struct.Struct((">" if big else "<") + "II").unpack_from
                btype, blen = head(buf, pos)
            if blen < _MIN_LEN.get(btype, 12) or blen & 3 or blen > MAX_BLOCK:
                problems.append(Problem(Reason.BAD_RECORD_LENGTH, base + pos, f"block length {blen}"))
                return pos, True
            nxt = pos + blen
            if nxt > n:
                break
            if head(buf, nxt - 8)[1] != blen:
                detail = f"block length {blen} differs from the copy at its end"
                problems.append(Problem(Reason.BAD_RECORD_LENGTH, base + pos, detail))
                return pos, True
            if btype == BLOCK_SHB:
                self._section = _Section(big, len(self.interfaces), 0, len(offs))
                blocks.sections.append(self._section)
            elif btype == BLOCK_IDB:
                self._add_interface(buf, pos, blen, blocks, problems, base)
            elif btype in (BLOCK_SPB, BLOCK_OPB):
                blocks.other_kinds.append((len(offs), btype))
                append(pos)
            elif btype in SKIPPED_BLOCKS:
                blocks.skipped += 1
            else:
                detail = f"unknown block type 0x{btype:08x} ({blen} bytes) skipped"
                problems.append(Problem(Reason.UNKNOWN_BLOCK, base + pos, detail))
            pos = nxt
            run = len(offs)
        stop = self._check_run(data, offs, run, big, problems, base)
        return stop if stop is not None else (pos, False)

    @staticmethod
    def _check_run(
        data: U8Array, offs: list[int], run: int, big: bool, problems: list[Problem], base: int
    ) -> tuple[int, bool] | None:
        """Check the lengths of the EPBs ``offs[run:]`` the fast path trusted; cut at the first bad one.

        Returns None when all are sound, else (where to stop, whether it is bad rather than incomplete).
        """
        if len(offs) == run:
            return None
        rec = np.array(offs[run:], dtype=np.int64)
        blen = u32(data, rec + 4, big).astype(np.int64)
        end = rec + blen
        inside = end <= len(data)
        bad = ((blen & 3) != 0) | (blen > MAX_PACKET_BLOCK) | (inside & (u32(data, end - 4, big) != blen))
        stops = np.flatnonzero(bad | ~inside)
        if len(stops) == 0:
            return None
        i = int(stops[0])
        del offs[run + i :]
        if not bad[i]:
            return int(rec[i]), False  # the block goes on past the buffer: wait for more data
        detail = f"packet block length {int(blen[i])} is impossible or differs at its end"
        problems.append(Problem(Reason.BAD_RECORD_LENGTH, base + int(rec[i]), detail))
        return int(rec[i]), True

    def _add_interface(
        self, buf: Buffer, pos: int, blen: int, blocks: _Blocks, problems: list[Problem], base: int
    ) -> None:
        if self._section is None:  # only when the data does not start with a readable section header
            self._section = _Section(False, len(self.interfaces), 0, len(blocks.offs))
            blocks.sections.append(self._section)
        order = ">" if self._section.big else "<"
        self._section.n_ifaces += 1
        if blen < 20:
            problems.append(Problem(Reason.BAD_RECORD_LENGTH, base + pos, "interface block too short"))
            self.interfaces.append(Interface(linktype=0xFFFF, snaplen=0))
            return
        linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", buf, pos + 8)
        tsresol, tsoffset = 6, 0
        p, end = pos + 16, pos + blen - 4
        while p + 4 <= end:
            code, length = struct.unpack_from(order + "HH", buf, p)
            if code == 0 or p + 4 + length > end:
                break
            if code == OPT_TSRESOL and length >= 1:
                tsresol = buf[p + 4]
            elif code == OPT_TSOFFSET and length == 8:
                (tsoffset,) = struct.unpack_from(order + "q", buf, p + 4)
            p += 4 + ((length + 3) & ~3)
        if (tsresol & 0x7F) > (63 if tsresol & 0x80 else 19):
            detail = (
                f"interface {self._section.n_ifaces - 1}: if_tsresol 0x{tsresol:02x} unusable, using 10^-6"
            )
            problems.append(Problem(Reason.BAD_RECORD_LENGTH, base + pos, detail))
            tsresol = 6
        if abs(tsoffset) > _MAX_TSOFFSET:  # found by fuzzing: ns since the epoch overflowed int64
            detail = f"interface {self._section.n_ifaces - 1}: if_tsoffset {tsoffset} s unusable, using 0"
            problems.append(Problem(Reason.BAD_RECORD_LENGTH, base + pos, detail))
            tsoffset = 0
        self.interfaces.append(Interface(linktype, snaplen, tsresol, tsoffset))

    def _frames(self, buf: Buffer, base: int, blocks: _Blocks, problems: list[Problem]) -> tuple[Frames, int]:
        """Gather the packet blocks' fields: (frames, how many had no timestamp)."""
        data = np.frombuffer(buf, dtype=np.uint8)
        if not blocks.offs:
            return Frames.empty(data), 0
        if not blocks.sections or blocks.sections[0].pk_start > 0:
            # Packet blocks before any section header (the file's first one was corrupt and
            # skipped; found by fuzzing) belong to no section: they name no interface.
            blocks.sections.insert(0, _Section(False, len(self.interfaces)))
        rec = np.array(blocks.offs, dtype=np.int64)
        kind = np.full(len(rec), BLOCK_EPB, dtype=np.int64)
        for i, btype in blocks.other_kinds:
            kind[i] = btype
        bounds = [s.pk_start for s in blocks.sections[1:]] + [len(rec)]
        parts = [
            self._gather(data, rec[s.pk_start : stop], kind[s.pk_start : stop], s)
            for s, stop in zip(blocks.sections, bounds, strict=True)
            if stop > s.pk_start
        ]
        cols = [np.concatenate(c) for c in zip(*parts, strict=True)]
        data_off, caplen, linktype, ts, timed, bad = cols
        for j in np.flatnonzero(bad):
            reason = Reason.UNKNOWN_INTERFACE if bad[j] == 2 else Reason.BAD_RECORD_LENGTH
            what = "names an interface with no description block" if bad[j] == 2 else "caplen does not fit"
            problems.append(Problem(reason, base + int(rec[j]), f"packet block {what}; skipped"))
        ok: slice | npt.NDArray[np.bool_] = bad == 0 if bad.any() else slice(None)
        timed = timed[ok]
        ts = ts[ok]
        untimed = len(timed) - int(timed.sum())
        if untimed:  # a Simple Packet Block takes the time of the packet before it
            last = np.where(timed, np.arange(len(ts)), -1)
            np.maximum.accumulate(last, out=last)
            ts = np.where(last >= 0, ts[np.maximum(last, 0)], self._last_ts)
        if len(ts):
            self._last_ts = int(ts[-1])
        frames = Frames(data, data_off[ok], caplen[ok], linktype[ok], ts, rec[ok] + base)
        return frames, untimed

    def _gather(
        self, data: npt.NDArray[np.uint8], rec: IntArray, kind: IntArray, sect: _Section
    ) -> tuple[npt.NDArray[np.int64 | np.bool_], ...]:
        """Fields of the packet blocks of one section (one byte order)."""
        big = sect.big
        blen = u32(data, rec + 4, big).astype(np.int64)
        iface = u32(data, rec + 8, big).astype(np.int64)
        raw = (u32(data, rec + 12, big).astype(np.uint64) << np.uint64(32)) | u32(data, rec + 16, big)
        caplen = u32(data, rec + 20, big).astype(np.int64)
        data_off = rec + 28
        room = blen - 32
        opb = kind == BLOCK_OPB
        if opb.any():  # interface id is 16 bits there, followed by a drops count
            iface[opb] = u16(data, rec[opb] + 8, big)
        spb = kind == BLOCK_SPB
        if spb.any():
            iface[spb] = 0
            data_off[spb] = rec[spb] + 12
            room[spb] = blen[spb] - 16
            caplen[spb] = np.minimum(u32(data, rec[spb] + 8, big), room[spb])  # original length
        bad = np.where((caplen > room) | (caplen > MAX_CAPLEN), 1, 0)
        bad[iface >= sect.n_ifaces] = 2
        gid = sect.first_iface + np.where(bad == 2, 0, iface)
        lt = np.array([i.linktype for i in self.interfaces] or [0xFFFF], dtype=np.int64)
        snap = np.array([i.snaplen for i in self.interfaces] or [0], dtype=np.int64)
        gid = np.minimum(gid, len(lt) - 1)
        if spb.any():  # the snaplen of interface 0 bounds what an SPB holds
            s = snap[gid[spb]]
            caplen[spb] = np.where(s > 0, np.minimum(caplen[spb], s), caplen[spb])
        if not self.interfaces:
            ts = np.zeros(len(rec), dtype=np.int64)
        elif bool((gid == gid[0]).all()):
            ts = self.interfaces[int(gid[0])].to_ns(raw)
        else:
            ts = np.zeros(len(rec), dtype=np.int64)
            for g in np.unique(gid):
                m = gid == g
                ts[m] = self.interfaces[int(g)].to_ns(raw[m])
        return data_off, caplen, lt[gid], ts, ~spb, bad

    def _resync(self, buf: Buffer, pos: int, base: int, final: bool) -> tuple[bool, int]:
        """Scan from ``pos`` (4-aligned in the stream) for a well-formed block: (found, position)."""
        n = len(buf)
        pos += -(base + pos) % 4
        big = self._section.big if self._section else False
        order = ">" if big else "<"
        while pos + 12 <= n:
            stop = min(n, pos + (1 << 20))
            words = np.frombuffer(buf, dtype=order + "u4", count=(stop - pos) // 4, offset=pos)
            for i in np.flatnonzero(np.isin(words, list(KNOWN_BLOCKS))):
                cand = pos + 4 * int(i)
                if cand + 12 > n:
                    return False, cand
                btype, blen = struct.unpack_from(order + "II", buf, cand)
                if btype == BLOCK_SHB:
                    if buf[cand + 8 : cand + 12] not in (BOM_LE, BOM_BE):
                        continue
                    btype, blen = struct.unpack_from(
                        ("<" if buf[cand + 8] == 0x4D else ">") + "II", buf, cand
                    )
                if blen < 12 or blen & 3 or blen > MAX_BLOCK:
                    continue
                if cand + blen > n:
                    if final:
                        continue
                    return False, cand  # cannot judge it yet: wait for more data from here
                if buf[cand + blen - 4 : cand + blen] == buf[cand + 4 : cand + 8]:
                    self._resync_start = None
                    return True, cand
            pos = stop - (stop - pos) % 4 if stop < n else pos + 4 * len(words)
        return False, pos

    def _give_up(self, where: int) -> Problem:
        start = self._resync_start if self._resync_start is not None else where
        self._resync_start = None
        detail = f"no well-formed block in the {where - start} bytes after offset {start}; rest skipped"
        return Problem(Reason.RESYNC_FAILED, start, detail)
