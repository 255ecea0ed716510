"""Open a capture (pcap or pcapng, plain or gzip, a file or stdin) as a stream of PacketBatch.

The capture is read in chunks (16 MiB by default), never whole: each chunk goes to the
container reader (:mod:`producers.pcap` or :mod:`producers.pcapng`, chosen by magic number),
which indexes the complete records in it; the part of a record cut by the chunk boundary
waits for the next chunk. The frames are decoded in blocks (:mod:`producers.decode`) and
handed out as batches of exactly ``batch_size`` packets, except the last one, and except when
the source is a pipe that has gone quiet for ``max_delay`` seconds (then what is pending is
handed out, so a live ``tcpdump -w - |`` is not held back).

Bad input is data. A source that is not a capture at all raises ``CaptureError`` before
anything is yielded. Everything after that is counted in :class:`CaptureStats` by reason
(see ``producers.frames.Reason``) and logged as a warning naming the source and the byte
offset (offsets are into the decompressed stream), at most ``max_warnings`` per reason;
the rest are counted as suppressed. Read errors and corrupt gzip data end the capture
with an error message, keeping every packet read before.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np

from core.errors import CaptureError
from producers.chunks import ChunkSource
from producers.decode import LINKTYPES, decode
from producers.frames import Frames, IntArray, ParseResult, Reason, RecordReader
from producers.pcap import PcapReader, is_pcap
from producers.pcapng import PcapngReader, is_pcapng
from schemas.batch import PacketBatch, column_dtypes

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_CHUNK_SIZE", "Capture", "CaptureStats", "open_capture"]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 10_000
DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024
DECODE_BLOCK = 16_384  # frames per NumPy pass: measured fastest (their columns stay in cache)
_QUIET = frozenset({Reason.NOT_IP, Reason.TRUNCATED_L4})  # counted, not worth a warning each
_FRAME_PROBLEMS = {
    Reason.TRUNCATED_LINK: "frame ends inside its link-layer header; skipped",
    Reason.TRUNCATED_IP: "frame ends inside its IP header; skipped",
    Reason.BAD_IP_HEADER: "IP version or header length is wrong; skipped",
    Reason.BAD_L4_HEADER: "TCP data offset or option length is wrong; packet kept",
}


@dataclass
class CaptureStats:
    """What reading one capture produced; updated while its batches are consumed."""

    source: str
    format: str = ""
    compressed: bool = False
    frames: int = 0  # frames read from the capture's records
    packets: int = 0  # IP packets handed out
    batches: int = 0
    bytes: int = 0  # capture bytes read (after decompression)
    malformed: Counter[str] = field(default_factory=Counter)  # reason -> records / frames
    untimed: int = 0  # pcapng Simple Packet Blocks, stamped with the previous packet's time
    skipped_blocks: int = 0  # pcapng blocks with no packet (names, statistics, secrets)
    warnings_suppressed: int = 0
    stopped: str | None = None  # why reading ended before the end of the source, if it did

    def summary(self) -> str:
        """One line for logs and the CLI."""
        bad = ", ".join(f"{k}={v}" for k, v in sorted(self.malformed.items())) or "none"
        text = (
            f"{self.source}: {self.format}{' (gzip)' if self.compressed else ''}, {self.frames} frames, "
            f"{self.packets} packets in {self.batches} batches, {self.bytes} bytes; skipped: {bad}"
        )
        return text + (f"; stopped: {self.stopped}" if self.stopped else "")


class Capture(Iterator[PacketBatch]):
    """An open capture: iterate it for PacketBatch; ``stats`` fills in as you go."""

    def __init__(
        self,
        source: ChunkSource,
        name: str,
        reader: RecordReader,
        start: int,
        first: bytes,
        *,
        batch_size: int,
        sensor_id: str,
        first_batch_seq: int,
        max_delay: float,
        clock: Callable[[], float],
        max_warnings: int,
        closer: Callable[[], None] | None,
    ) -> None:
        self.stats = CaptureStats(name, reader.format, source.compressed, bytes=len(first))
        self.batch_size = batch_size
        self.sensor_id = sensor_id
        self._src = source
        self._reader = reader
        self._first, self._start = first, start
        self._seq = first_batch_seq
        self._max_delay = max_delay
        self._clock = clock
        self._max_warnings = max_warnings
        self._warned: Counter[str] = Counter()
        self._linktypes_warned: set[int] = set()
        self._closer = closer
        self._pending: list[PacketBatch] = []
        self._pending_rows = 0
        self._pending_since = 0.0
        self._gen = self._batches()

    def __next__(self) -> PacketBatch:
        return next(self._gen)

    def close(self) -> None:
        """Stop reading and close the file this capture opened (not a stream it was given)."""
        self._gen.close()
        if self._closer is not None:
            self._closer()
            self._closer = None

    def __enter__(self) -> Capture:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _batches(self) -> Generator[PacketBatch, None, None]:
        # One buffer for the whole capture: the tail of a record cut by a chunk boundary moves to
        # the front and the next chunk is read in after it (no concatenation, no per-chunk bytes).
        src, chunk = self._src, self._src.chunk_size
        first = self._first[self._start :]
        del self._first
        buf = np.empty(max(2 * chunk, len(first) + chunk), dtype=np.uint8)
        length = len(first)
        buf[:length] = np.frombuffer(first, dtype=np.uint8)
        base, eof = self._start, False
        while True:
            res = self._reader.parse(buf.data[:length], base, eof)
            self._take(res)
            yield from self._full_batches()
            consumed, stopped = res.consumed, res.stopped
            if stopped:
                gave_up = [p.detail for p in res.problems if p.reason == Reason.RESYNC_FAILED]
                self.stats.stopped = gave_up[-1] if gave_up else "the reader gave the rest up"
            del res  # its frames view the buffer
            if stopped or eof:
                break
            rest = length - consumed
            if rest and consumed:
                buf[:rest] = buf[consumed:length]
            length, base = rest, base + consumed
            if self._pending_rows and not src.ready(self._pending_since + self._max_delay - self._clock()):
                yield from self._flush()
            if len(buf) - length < chunk:  # a record longer than the room left: grow
                bigger = np.empty(length + 2 * chunk, dtype=np.uint8)
                bigger[:length] = buf[:length]
                buf = bigger
            try:
                got = src.fill(buf.data[length : length + chunk])
            except OSError as exc:
                src.error, got = f"read error: {exc}", 0
            if src.error:
                self.stats.stopped = src.error
                logger.error(
                    "%s: offset %d: %s; keeping the packets read before",
                    self.stats.source,
                    base + length,
                    src.error,
                )
            eof = got == 0
            length += got
            self.stats.bytes += got
        yield from self._flush()
        logger.info("%s", self.stats.summary())
        if self.stats.warnings_suppressed:
            logger.warning(
                "%s: %d more warnings not shown", self.stats.source, self.stats.warnings_suppressed
            )
        if self._closer is not None:
            self._closer()
            self._closer = None

    def _take(self, res: ParseResult) -> None:
        """Count and log the reader's problems, decode its frames, queue the packets."""
        st = self.stats
        st.untimed += res.untimed
        st.skipped_blocks += res.skipped
        for p in res.problems:
            st.malformed[str(p.reason)] += 1
            self._warn(p.reason, p.offset, p.detail)
        frames = res.frames
        st.frames += len(frames)
        for i in range(0, len(frames), DECODE_BLOCK):
            block = frames.slice(i, i + DECODE_BLOCK)
            out = decode(block, self.sensor_id)
            for reason, rows in out.problems.items():
                st.malformed[str(reason)] += len(rows)
                self._warn_frames(reason, block, rows)
            if len(out.batch):
                if not self._pending_rows:
                    self._pending_since = self._clock()
                self._pending.append(out.batch)
                self._pending_rows += len(out.batch)

    def _warn(self, reason: str, offset: int, detail: str) -> None:
        if self._warned[reason] < self._max_warnings:
            self._warned[reason] += 1
            logger.warning("%s: offset %d: %s (%s)", self.stats.source, offset, detail, reason)
        else:
            self.stats.warnings_suppressed += 1

    def _warn_frames(self, reason: Reason, block: Frames, rows: IntArray) -> None:
        if reason in _QUIET:
            return
        if reason == Reason.UNKNOWN_LINKTYPE:  # one message per link type is enough
            types = block.linktype[rows]
            for lt in np.unique(types):
                if int(lt) not in self._linktypes_warned:
                    self._linktypes_warned.add(int(lt))
                    first = int(block.rec_off[rows][types == lt][0])
                    detail = f"link type {lt} is not one of {sorted(LINKTYPES)}; its frames are skipped"
                    self._warn(reason, first, detail)
            return
        room = max(self._max_warnings - self._warned[reason], 0)
        what = _FRAME_PROBLEMS.get(reason, "bad frame")
        for r in rows[:room]:
            self._warn(reason, int(block.rec_off[r]), f"{what} ({int(block.caplen[r])} bytes captured)")
        self.stats.warnings_suppressed += max(len(rows) - room, 0)

    def _full_batches(self) -> Iterator[PacketBatch]:
        while self._pending_rows >= self.batch_size:
            yield self._emit(self.batch_size)

    def _flush(self) -> Iterator[PacketBatch]:
        if self._pending_rows:
            yield self._emit(self._pending_rows)

    def _emit(self, n: int) -> PacketBatch:
        """Take ``n`` pending rows as one batch with the next sequence number."""
        parts, got = [], 0
        while got < n:
            head = self._pending[0]
            take = min(len(head), n - got)
            parts.append(head.columns if take == len(head) else head.slice(0, take).columns)
            if take == len(head):
                self._pending.pop(0)
            else:
                self._pending[0] = head.slice(take, len(head))
            got += take
        cols = (
            parts[0]
            if len(parts) == 1
            else {name: np.concatenate([p[name] for p in parts]) for name in column_dtypes()}
        )
        batch = PacketBatch(self.sensor_id, self._seq, cols)
        self._seq += 1
        self._pending_rows -= n
        self._pending_since = self._clock()
        self.stats.batches += 1
        self.stats.packets += n
        return batch


def _detect(stream: BinaryIO, chunk_size: int) -> tuple[ChunkSource, bytes, RecordReader, int]:
    """Read the start of the stream and pick the reader its magic number calls for."""
    src = ChunkSource(stream, chunk_size)
    first = src.read()
    while first and len(first) < 28:  # a pipe may hand the header over in pieces
        more = src.read()
        if not more:
            break
        first += more
    if src.error and not first:
        raise CaptureError(src.error)
    if not first:
        raise CaptureError("empty file, not a capture")
    reader: RecordReader
    if is_pcap(first):
        reader, start = PcapReader.from_start(first)
    elif is_pcapng(first):
        reader, start = PcapngReader.from_start(first)
    else:
        raise CaptureError(f"not a pcap or pcapng capture (starts with {first[:8].hex()})")
    return src, first, reader, start


def open_capture(
    source: str | os.PathLike[str] | BinaryIO,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    sensor_id: str = "",
    first_batch_seq: int = 0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_delay: float = 0.1,
    max_warnings: int = 10,
    clock: Callable[[], float] = time.monotonic,
) -> Capture:
    """Open a pcap / pcapng file (plain or gzip; a path, ``-`` for stdin, or a binary stream).

    Raises CaptureError at once when the source is not a capture. Iterate the result for
    PacketBatch of at most ``batch_size`` packets; its ``stats`` counts what was read and skipped.
    """
    if batch_size < 1 or chunk_size < 1024:
        raise CaptureError(f"batch_size must be >= 1 and chunk_size >= 1024 (got {batch_size}, {chunk_size})")
    closer: Callable[[], None] | None = None
    if isinstance(source, (str, os.PathLike)):
        if str(source) == "-":
            stream, name = sys.stdin.buffer, "<stdin>"
        else:
            try:
                stream = Path(source).open("rb")  # noqa: SIM115 - closed by Capture
            except OSError as exc:
                raise CaptureError(f"cannot open capture {source}: {exc.strerror}") from exc
            name, closer = str(source), stream.close
    else:
        stream, name = source, str(getattr(source, "name", "<stream>"))  # a pipe's name is its fd
    try:
        src, first, reader, start = _detect(stream, chunk_size)
    except CaptureError as exc:
        if closer is not None:
            closer()
        raise type(exc)(f"{name}: {exc}") from None
    except OSError as exc:
        if closer is not None:
            closer()
        raise CaptureError(f"{name}: cannot read: {exc}") from exc
    return Capture(
        src,
        name,
        reader,
        start,
        first,
        batch_size=batch_size,
        sensor_id=sensor_id,
        first_batch_seq=first_batch_seq,
        max_delay=max_delay,
        clock=clock,
        max_warnings=max_warnings,
        closer=closer,
    )
