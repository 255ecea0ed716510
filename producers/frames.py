"""Captured frames as container readers hand them to the decoder, and the problems they report.

A container reader (:mod:`producers.pcap`, :mod:`producers.pcapng`) does not copy frame
bytes: it returns a :class:`Frames` index into the chunk of the capture it was given (one
bytes buffer plus one array per record field). :mod:`producers.decode` turns that index
into a ``PacketBatch``. Anything wrong with a record is a :class:`Problem`: data, counted
and logged by :mod:`producers.capture`, never an exception in the middle of a file.

The gather helpers read one field at many offsets at once; they clip indices to the
buffer, so callers may gather speculatively and mask the rows whose frames are too short.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

__all__ = [
    "Buffer",
    "DROP_REASONS",
    "Frames",
    "IntArray",
    "ParseResult",
    "Problem",
    "Reason",
    "RecordReader",
    "U8Array",
    "be16",
    "be32",
    "le16",
    "le32",
    "u8",
    "u16",
    "u32",
]

Buffer = bytes | bytearray | memoryview  # what readers index (the capture passes a memoryview)
IntArray = npt.NDArray[np.int64]
U8Array = npt.NDArray[np.uint8]
Array = npt.NDArray[Any]


class Reason(StrEnum):
    """Why a record or frame was not (fully) turned into a packet; the keys of the counts."""

    TRUNCATED_RECORD = "truncated_record"  # the capture ends inside a record or block
    BAD_RECORD_LENGTH = "bad_record_length"  # caplen > snaplen / limit, inconsistent block length
    RESYNC_FAILED = "resync_failed"  # after a bad length no plausible next record was found
    UNKNOWN_BLOCK = "unknown_block"  # pcapng block type this reader does not know (skipped)
    UNKNOWN_INTERFACE = "unknown_interface"  # pcapng packet naming an interface with no IDB
    UNKNOWN_LINKTYPE = "unknown_linktype"  # a frame of a link type the decoder cannot read
    TRUNCATED_LINK = "truncated_link"  # captured bytes end inside the link-layer header
    NOT_IP = "not_ip"  # ARP, LLC, MPLS ...: not a packet for darkscope
    BAD_IP_HEADER = "bad_ip_header"  # version nibble disagrees with the link layer, IHL < 5
    TRUNCATED_IP = "truncated_ip"  # captured bytes end inside the IP header (or its extensions)
    TRUNCATED_L4 = "truncated_l4"  # emitted, but the TCP/UDP/ICMP header is cut short
    BAD_L4_HEADER = "bad_l4_header"  # emitted; TCP data offset < 5 or malformed TCP options


# Frames with these reasons do not become packets; the others are emitted with what they hold.
DROP_REASONS = frozenset(
    {
        Reason.UNKNOWN_LINKTYPE,
        Reason.TRUNCATED_LINK,
        Reason.NOT_IP,
        Reason.BAD_IP_HEADER,
        Reason.TRUNCATED_IP,
    }
)


class Problem(NamedTuple):
    """One bad record: what, where in the (decompressed) capture stream, and a readable detail."""

    reason: Reason
    offset: int
    detail: str


@dataclass(frozen=True, eq=False)
class Frames:
    """Frames captured in one buffer, one row per frame (all arrays int64 of equal length)."""

    data: U8Array  # the buffer the offsets point into
    data_off: IntArray  # offset of the first captured byte of each frame in ``data``
    caplen: IntArray  # bytes captured
    linktype: IntArray  # LINKTYPE_* value of the frame's interface
    ts: IntArray  # capture time, ns since the Unix epoch (UTC)
    rec_off: IntArray  # stream offset of the record or block, for messages

    def __len__(self) -> int:
        return len(self.data_off)

    def slice(self, start: int, stop: int) -> Frames:
        """Rows ``start:stop`` (views, same buffer)."""
        return Frames(
            self.data,
            self.data_off[start:stop],
            self.caplen[start:stop],
            self.linktype[start:stop],
            self.ts[start:stop],
            self.rec_off[start:stop],
        )

    @classmethod
    def empty(cls, data: U8Array | None = None) -> Frames:
        """No frames."""
        z = np.zeros(0, dtype=np.int64)
        buf = np.zeros(0, dtype=np.uint8) if data is None else data
        return cls(buf, z, z, z, z, z)


class ParseResult(NamedTuple):
    """What a reader made of one buffer: frames, bytes it consumed, problems, and whether it gave up."""

    frames: Frames
    consumed: int
    problems: list[Problem]
    stopped: bool = False  # the reader gave the rest of the file up
    skipped: int = 0  # known non-packet blocks skipped (pcapng NRB, ISB, DSB, ...)
    untimed: int = 0  # frames without a timestamp of their own (pcapng SPB)


class RecordReader(Protocol):
    """An incremental capture-container reader (pcap or pcapng)."""

    format: str

    def parse(self, buf: Buffer, base: int, final: bool) -> ParseResult:
        """Index the complete records at the start of ``buf`` (stream offset ``base``).

        ``final`` says no more data follows, so a partial record at the end is truncated.
        """
        ...


def u8(data: U8Array, idx: IntArray) -> U8Array:
    """Bytes at ``idx``."""
    return data.take(idx, mode="clip")


def be16(data: U8Array, idx: IntArray) -> npt.NDArray[np.uint16]:
    """Big-endian 16-bit values at ``idx`` (separate byte gathers beat a 2-D gather + view)."""
    hi = data.take(idx, mode="clip").astype(np.uint16)
    hi <<= 8
    hi |= data.take(idx + 1, mode="clip")
    return hi


def le16(data: U8Array, idx: IntArray) -> npt.NDArray[np.uint16]:
    """Little-endian 16-bit values at ``idx``."""
    hi = data.take(idx + 1, mode="clip").astype(np.uint16)
    hi <<= 8
    hi |= data.take(idx, mode="clip")
    return hi


def _u32(data: U8Array, idx: IntArray, order: tuple[int, int, int, int]) -> npt.NDArray[np.uint32]:
    out = data.take(idx + order[0], mode="clip").astype(np.uint32)
    for k in order[1:]:
        out <<= 8
        out |= data.take(idx + k, mode="clip")
    return out


def be32(data: U8Array, idx: IntArray) -> npt.NDArray[np.uint32]:
    """Big-endian 32-bit values at ``idx``."""
    return _u32(data, idx, (0, 1, 2, 3))


def le32(data: U8Array, idx: IntArray) -> npt.NDArray[np.uint32]:
    """Little-endian 32-bit values at ``idx``."""
    return _u32(data, idx, (3, 2, 1, 0))


def u16(data: U8Array, idx: IntArray, big: bool) -> npt.NDArray[np.uint16]:
    """16-bit values at ``idx`` in the given byte order."""
    return be16(data, idx) if big else le16(data, idx)


def u32(data: U8Array, idx: IntArray, big: bool) -> npt.NDArray[np.uint32]:
    """32-bit values at ``idx`` in the given byte order."""
    return be32(data, idx) if big else le32(data, idx)
