"""Fuzz target ``decode``: the packet decoder (:func:`producers.decode.decode`) on frames of
any link type, as a container reader hands them over.

The input is a list of frames, each ``[link type selector: 1 byte][length: 2 bytes LE][bytes]``
(the last one may be cut short); the frames lie end to end in one buffer with a few bytes of
junk after them, which a decoder reading past a frame's captured length would see.
"""

from __future__ import annotations

import numpy as np

from fuzz.seeds import LINKTYPES, frames
from producers.decode import decode
from producers.frames import Frames

__all__ = ["check", "seeds", "unpack"]

# Selector byte -> link type: every type the decoder reads, then a few it does not.
_SELECT = (*LINKTYPES, 147, 9, 0xFFFF)


def unpack(data: bytes) -> Frames:
    """The frames the input describes, laid out as :class:`Frames` over one buffer."""
    buf, offs, caplens, lts = bytearray(), [], [], []
    pos = 0
    while pos + 3 <= len(data):
        lt = _SELECT[data[pos] % len(_SELECT)]
        length = int.from_bytes(data[pos + 1 : pos + 3], "little")
        frame = data[pos + 3 : pos + 3 + length]
        pos += 3 + length
        offs.append(len(buf))
        caplens.append(len(frame))
        lts.append(lt)
        buf += frame
    buf += b"\xee" * 16
    n = len(offs)
    i64 = np.int64
    return Frames(
        data=np.frombuffer(bytes(buf), dtype=np.uint8),
        data_off=np.array(offs, dtype=i64),
        caplen=np.array(caplens, dtype=i64),
        linktype=np.array(lts, dtype=i64),
        ts=1_650_000_000_000_000_000 + np.arange(n, dtype=i64),
        rec_off=np.array(offs, dtype=i64),
    )


def check(data: bytes) -> None:
    """Decode the frames; every kept row and every problem row must be a frame of the input."""
    f = unpack(data)
    result = decode(f)
    n = len(result.batch)
    if n > len(f):
        raise AssertionError(f"{n} packets out of {len(f)} frames")
    for reason, rows in result.problems.items():
        if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= len(f)):
            raise AssertionError(f"{reason} names a frame outside the input")


def _pack(items: list[tuple[int, bytes]]) -> bytes:
    return b"".join(bytes([_SELECT.index(lt)]) + len(fr).to_bytes(2, "little") + fr for lt, fr in items)


def seeds() -> list[bytes]:
    """Every seed frame alone, and runs of them mixing link types."""
    items = frames()
    return [_pack([it]) for it in items] + [_pack(items[i : i + 7]) for i in range(0, len(items), 7)]
