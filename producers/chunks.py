"""Capture bytes from a file, a pipe or stdin, in chunks, gunzipped when they start with 1f 8b.

The format is told by magic numbers, never by file name. Reading uses ``read1`` /
``readinto1`` so a pipe gives what it has instead of blocking for a full chunk, and
:meth:`ChunkSource.ready` says whether a pipe has more to give (regular files always do),
which lets the capture hand out a partial batch when a live source goes quiet.
A gzip stream may hold several members (concatenated .gz files). Corrupt or cut gzip
data ends the stream with ``error`` set; what was read before is kept by the caller.
"""

from __future__ import annotations

import os
import select
import stat
import zlib
from collections.abc import Callable
from typing import BinaryIO

__all__ = ["FIRST_READ", "GZIP_MAGIC", "ChunkSource"]

FIRST_READ = 64 * 1024  # bytes read to detect the format
GZIP_MAGIC = b"\x1f\x8b"


class ChunkSource:
    """Chunks of capture bytes from a binary stream, gunzipped when it starts with the gzip magic."""

    def __init__(self, stream: BinaryIO, chunk_size: int) -> None:
        self._stream = stream
        self._read = getattr(stream, "read1", stream.read)  # read1: a pipe gives what it has
        self._readinto: Callable[[memoryview], int | None] | None = getattr(
            stream, "readinto1", getattr(stream, "readinto", None)
        )
        self.chunk_size = chunk_size
        self.error: str | None = None
        self._spill = b""  # output that did not fit the caller's buffer
        try:
            mode = os.fstat(stream.fileno()).st_mode
            self._fd: int | None = None if stat.S_ISREG(mode) else stream.fileno()
        except (OSError, AttributeError, ValueError):  # BytesIO and friends: always ready
            self._fd = None
        self._raw = self._read(FIRST_READ)  # enough to tell the format; full chunks come after
        while 0 < len(self._raw) < 2:  # a pipe may give a single byte first
            more = self._read_raw()
            if not more:
                break
            self._raw += more
        self.compressed = self._raw[:2] == GZIP_MAGIC
        self._z = zlib.decompressobj(wbits=31) if self.compressed else None

    def _read_raw(self) -> bytes:
        data: bytes = self._read(self.chunk_size)
        return data

    def read(self) -> bytes:
        """The next chunk of capture bytes; b"" at the end (or after an error, see ``error``)."""
        if self._spill:
            data, self._spill = self._spill, b""
            return data
        if self._z is None:
            data, self._raw = self._raw or self._read_raw(), b""
            return data
        while True:
            z = self._z
            fresh = z.eof
            if fresh:  # a member ended: what follows is another member (concatenated .gz) or nothing
                self._raw = z.unused_data + (self._raw or self._read_raw())
                if not self._raw:
                    return b""
                z = self._z = zlib.decompressobj(wbits=31)
            if z.unconsumed_tail:
                inp = z.unconsumed_tail
            elif self._raw:
                inp, self._raw = self._raw, b""
            else:
                inp = self._read_raw()
                if not inp:
                    self.error = self.error or "gzip stream ends early"
                    return b""
            try:
                out = z.decompress(inp, self.chunk_size)
            except zlib.error as exc:
                where = "data after the end of the gzip stream" if fresh else "gzip data corrupt"
                self.error = f"{where}: {exc}"
                return b""
            if out:
                return out

    def fill(self, dest: memoryview) -> int:
        """Read the next chunk of capture bytes into ``dest``: how many (0 at the end or after an error)."""
        if self._z is None and not self._raw and not self._spill and self._readinto is not None:
            got: int | None = self._readinto(dest)
            return got or 0
        data = self.read()  # gunzipped output, or the first raw read
        k = min(len(data), len(dest))
        dest[:k] = data[:k]
        self._spill = data[k:]
        return k

    def ready(self, timeout: float) -> bool:
        """Whether reading would return soon (always, for files and decompressor backlog)."""
        if self._fd is None or self._raw or self._spill or (self._z is not None and self._z.unconsumed_tail):
            return True
        readable, _, _ = select.select([self._fd], [], [], max(timeout, 0.0))
        return bool(readable)
