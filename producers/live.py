"""Live capture through libpcap (pcapy-ng), handed out as columnar PacketBatches.

``next_batch`` of pcapy-ng returns many packets per call (one bytes buffer plus a packed
array of (sec, usec, offset, caplen) records), which is exactly the shape the vectorised
decoder takes: no per-packet Python object is built.
"""

from __future__ import annotations

import logging
import select
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from core.errors import CaptureError
from producers.decode import LINKTYPES, decode
from producers.frames import Frames
from schemas.batch import PacketBatch

__all__ = ["LiveCapture", "LiveStats"]

logger = logging.getLogger(__name__)


@dataclass
class LiveStats:
    """Counters of a live capture (libpcap's are cumulative since open)."""

    source: str
    frames: int = 0
    packets: int = 0
    batches: int = 0
    kernel_received: int = 0
    kernel_dropped: int = 0
    interface_dropped: int = 0
    malformed: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        """One line for logs and the CLI."""
        bad = ", ".join(f"{k}={v}" for k, v in sorted(self.malformed.items())) or "none"
        return (
            f"{self.source}: {self.frames} frames, {self.packets} packets in {self.batches} batches; "
            f"kernel dropped {self.kernel_dropped}, interface dropped {self.interface_dropped}; "
            f"skipped: {bad}"
        )


class LiveCapture(Iterator[PacketBatch]):
    """Capture from an interface until :meth:`stop`; iterate for batches."""

    def __init__(
        self,
        iface: str,
        bpf: str = "",
        snaplen: int = 256,
        promiscuous: bool = True,
        buffer_mb: int = 64,
        batch_size: int = 10_000,
        linger: float = 0.1,
        sensor_id: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Open ``iface`` (raises CaptureError when libpcap refuses) and apply ``bpf``."""
        try:
            import pcapy
        except ImportError as exc:  # pragma: no cover - pcapy-ng is a dependency
            raise CaptureError("live capture needs pcapy-ng (pip install pcapy-ng)") from exc
        self._pcapy = pcapy
        try:
            handle = pcapy.create(iface)
            handle.set_snaplen(snaplen)
            handle.set_promisc(1 if promiscuous else 0)
            handle.set_timeout(max(1, int(linger * 1000)))
            handle.set_buffer_size(buffer_mb * 2**20)
            handle.activate()
            if bpf:
                handle.setfilter(bpf)
            # Non-blocking reads behind select(): a blocking read on an idle interface never
            # returns to Python, so SIGTERM would wait for the next packet.
            handle.setnonblock(1)
            self._fd = int(handle.getfd())
        except pcapy.PcapError as exc:
            raise CaptureError(f"cannot capture on {iface}: {exc}") from exc
        self._handle = handle
        self.linktype = int(handle.datalink())
        if self.linktype not in LINKTYPES:
            raise CaptureError(f"{iface}: link type {self.linktype} is not one darkscope decodes")
        self.stats = LiveStats(f"iface:{iface}")
        self.batch_size = batch_size
        self.linger = linger
        self.sensor_id = sensor_id
        self._clock = clock
        self._stopped = False
        self._pending: list[PacketBatch] = []
        self._pending_n = 0
        self._seq = 0

    def stop(self) -> None:
        """Make the iteration end after the packets already captured are handed out."""
        self._stopped = True

    def _poll_stats(self) -> None:
        recv, drop, ifdrop = self._handle.stats()
        self.stats.kernel_received, self.stats.kernel_dropped, self.stats.interface_dropped = (
            recv,
            drop,
            ifdrop,
        )

    def _read(self) -> None:
        try:
            ready, _, _ = select.select([self._fd], [], [], self.linger)
        except InterruptedError:  # a signal arrived: let the loop look at _stopped
            return
        if not ready:
            return
        data, meta = self._handle.next_batch(self.batch_size)
        if not len(meta):
            return
        rec = np.frombuffer(meta, dtype=np.uint32).reshape(-1, 4).astype(np.int64)
        n = len(rec)
        frames = Frames(
            np.frombuffer(data, dtype=np.uint8),
            rec[:, 2],
            rec[:, 3],
            np.full(n, self.linktype, dtype=np.int64),
            rec[:, 0] * 10**9 + rec[:, 1] * 1000,
            np.zeros(n, dtype=np.int64),
        )
        result = decode(frames, self.sensor_id, 0)
        self.stats.frames += n
        for reason, rows in result.problems.items():
            self.stats.malformed[str(reason)] += len(rows)
        if len(result.batch):
            self._pending.append(result.batch)
            self._pending_n += len(result.batch)

    def _emit(self) -> PacketBatch:
        batch = PacketBatch.concat(self._pending, self.sensor_id, self._seq)
        self._pending, self._pending_n = [], 0
        self._seq += 1
        self.stats.packets += len(batch)
        self.stats.batches += 1
        return batch

    def __next__(self) -> PacketBatch:
        started = self._clock()
        while not self._stopped:
            self._read()
            self._poll_stats()
            if self._pending_n >= self.batch_size or (
                self._pending_n and self._clock() - started >= self.linger
            ):
                return self._emit()
        if self._pending_n:
            return self._emit()
        self._handle.close()
        raise StopIteration
