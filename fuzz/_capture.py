"""What the sensor does with a capture's bytes, shared by the ``pcap`` and ``pcapng`` harnesses."""

from __future__ import annotations

import io

from producers.capture import open_capture

__all__ = ["read_capture"]


def read_capture(data: bytes) -> int:
    """Read ``data`` as a capture to its end, as ``darkscope sensor --pcap`` does; the packets.

    Small chunks (the reader's minimum) and batches, so records and batches straddle chunk
    boundaries even in short inputs.
    """
    packets = 0
    with open_capture(io.BytesIO(data), batch_size=50, chunk_size=1024, max_warnings=1) as capture:
        for batch in capture:
            packets += len(batch)
        capture.stats.summary()
    return packets
