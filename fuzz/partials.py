"""Fuzz target ``partials``: what the worker's count agent does with a message of
``darkscope.counts``: :func:`schemas.partials.decode_frame`, then the frame counted into a
counts partition's windows (:class:`streams.shard.ShardCounter`) whose other packets
partitions are idle, again as the next batch two hours later, and the windows closed.

The count agent catches only darkscope errors, so a frame that decodes must also count: a
frame whose packet rows and address pairs disagreed decoded and then crashed the windows
(``IndexError`` in ``streams/windows.py``); ``decode_frame`` now rejects it.
"""

from __future__ import annotations

from fuzz._messages import seeds_for
from schemas.codec import Codec
from schemas.names import PARTIAL_COUNTS
from schemas.partials import EMPTY, IDLE, PartialFrame, decode_frame
from streams.shard import ShardCounter

__all__ = ["check", "seeds"]

_CODEC = Codec()
PACKETS_PARTITIONS = 4
_TWO_HOURS = 2 * 3600 * 10**9  # ns: the second batch's watermark closes the first one's hour


def check(data: bytes) -> None:
    """Decode the PartialCounts frame, count it (as two batches) and close what it closes."""
    frame = decode_frame(_CODEC, data)
    _ = frame.total_packets
    counter = ShardCounter(frame.shard, PACKETS_PARTITIONS, retention_s=3600, lateness_s=60)
    for p in range(PACKETS_PARTITIONS):  # the other partitions never had data
        counter.count(PartialFrame((), p, EMPTY, -1, frame.shard, frame.shards), p)
    counter.count(frame, PACKETS_PARTITIONS)
    later = frame.watermark if frame.watermark in (IDLE, EMPTY) else min(frame.watermark + _TWO_HOURS, 2**62)
    counter.count(
        frame._replace(source_offset=frame.source_offset + 1, watermark=later), PACKETS_PARTITIONS + 1
    )
    counter.tick()


def seeds() -> list[bytes]:
    """Partial counts of enriched batches over two counts partitions, idle markers, then one
    frame of every other schema."""
    return seeds_for(PARTIAL_COUNTS)
